//! Fuzz target: the whole engine (src/core) on virtual time. The input is records cut
//! at "\n%%\n"; each record's first byte picks the kind, its second a selector, and
//! the rest is the payload:
//!   U  SIP datagram from phone source sel%4 (127.0.0.1:5061+i, phone 100(i+1))
//!   T  the same over TCP (ConnId 10+i)
//!   O  CTI connection sel%3 opens    M  a CTI message on it    C  it closes
//!   W  Timeout after 2^(sel%24) ms   X  Timeout at poll_timeout() (the next deadline)
//!   H  HTTP GET of the payload as path
//! Other first bytes map onto these. So that deep states are reachable, a SIP
//! payload may name what a phone would copy from the engine's last message to it:
//! @AUTH@ (digest credentials for the last nonce it was given), @BRANCH@ (a fresh
//! branch), @VIA@ @FROM@ @TO@ @CALLID@ @CSEQ@ (of the last request the engine sent
//! it, to answer that), @RTO@ @RCALLID@ (To and Call-ID of the last response, for
//! ACK and BYE), @CONTACT@ (the URI of the last Contact it was sent) and @LEN@ (the
//! body's length); a CTI payload may name @SECRET@ (the app's secret) and @CALL@
//! (the last call a CTI message named). FUZZ_TRACE=1 prints inputs and outputs.
//! Properties: no panic; after a Timeout at `now`, poll_timeout() is after `now`;
//! every SIP message sent parses (but answers to unparsable SIP, which echo what
//! could be read) and is within the message limit; every CTI message
//! is one line of valid JSON; outputs per input are bounded.
#![no_main]

use ctibox::core::digest::{expected_response, ha1, Algorithm, Credentials};
use ctibox::core::rng::EngineRng;
use ctibox::core::sip::parse_message;
use ctibox::core::{ConnId, CtiTransport, Engine, HttpRequest, Input, Output, Restored, Time, Transport, Verdict, VerifyJob};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const SOURCES: usize = 4;
const CTI_CONNS: u64 = 3;
const SECRET: &str = "Fz9-app-secret-qwv";
/// Most outputs one input may cause (a CTI snapshot of every device is the largest).
const MAX_OUTPUTS: usize = 512;

fn password(i: usize) -> String {
    format!("Zq7-fuzz-secret-{}", ["kkkl", "kkkm", "kkkn", "kkko"][i])
}

fn config() -> Arc<ctibox::config::Config> {
    static CFG: OnceLock<Arc<ctibox::config::Config>> = OnceLock::new();
    CFG.get_or_init(|| {
        // Argon2id at its smallest cost, so that a login is cheap to try.
        use argon2::{Algorithm as A2, Argon2, Params, PasswordHasher, Version};
        let a2 = Argon2::new(A2::Argon2id, Version::V0x13, Params::new(8, 1, 1, None).unwrap());
        let hash = a2.hash_password_with_salt(SECRET.as_bytes(), &[7; 16]).unwrap().to_string();
        let mut toml = format!(
            "[system]\nname = \"fuzz\"\n[sip]\nudp = \"127.0.0.1:5060\"\ntcp = \"127.0.0.1:5060\"\nrealm = \"ctibox\"\n\
             digest_algorithms = [\"md5\", \"sha-256\"]\n[cti]\nlisten = \"127.0.0.1:2748\"\nheartbeat_s = 30\n\
             [http]\nlisten = \"127.0.0.1:8080\"\n[board]\nname = \"sim\"\n\
             [[partition]]\nname = \"p\"\n[[calling_search_space]]\nname = \"all\"\npartitions = [\"p\"]\n\
             [[line]]\ndn = \"2000\"\npartition = \"p\"\n\
             [[line]]\ndn = \"2001\"\npartition = \"p\"\n\
             [[device]]\nname = \"rp\"\ntype = \"cti_route_point\"\nlines = [\"2000\"]\ncss = \"all\"\n\
             [[device]]\nname = \"port\"\ntype = \"cti_port\"\nlines = [\"2001\"]\ncss = \"all\"\n\
             [[app_user]]\nname = \"app\"\nsecret = \"{hash}\"\ndevices = [\"rp\", \"port\", \"phone-1001\", \"phone-1002\"]\n"
        );
        for i in 0..SOURCES {
            let dn = 1001 + i;
            let fwd = if i == 2 { "forward = { busy = \"2000\", no_answer = \"2000\", no_answer_timeout_s = 5 }\n" } else { "" };
            toml.push_str(&format!(
                "[[line]]\ndn = \"{dn}\"\npartition = \"p\"\n{fwd}\
                 [[device]]\nname = \"phone-{dn}\"\ntype = \"sip_phone\"\nusername = \"{dn}\"\npassword = \"{}\"\nlines = [\"{dn}\"]\ncss = \"all\"\n",
                password(i)
            ));
        }
        Arc::new(ctibox::config::parse_str(&toml, "fuzz.toml").expect("fuzz config"))
    })
    .clone()
}

fn source(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5061 + i as u16))
}

/// What a phone remembers of the engine's last messages to it.
#[derive(Default)]
struct Phone {
    nonce: Option<String>,
    nc: u32,
    req: HashMap<&'static str, String>,
    resp: HashMap<&'static str, String>,
    contact: Option<String>,
}

fn header<'a>(text: &'a str, names: &[&str]) -> Option<&'a str> {
    text.split("\r\n").skip(1).take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        names.iter().any(|w| n.trim().eq_ignore_ascii_case(w)).then(|| v.trim())
    })
}

impl Phone {
    fn saw(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        if let Some(n) = text.split("nonce=\"").nth(1).and_then(|r| r.split('"').next()) {
            self.nonce = Some(n.to_string());
            self.nc = 0;
        }
        // Responses are remembered only when they make or keep a dialog (1xx, 2xx): a
        // challenge or refusal carries no dialog to continue.
        let status = text.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)).and_then(|c| c.parse::<u16>().ok());
        if status.is_some_and(|c| c >= 300) {
            return;
        }
        if let Some(c) = header(&text, &["contact", "m"]) {
            let uri = c.split('<').nth(1).and_then(|r| r.split('>').next()).unwrap_or(c);
            self.contact = Some(uri.to_string());
        }
        let keep = if status.is_some() { &mut self.resp } else { &mut self.req };
        for (k, names) in [("via", &["via", "v"][..]), ("from", &["from", "f"]), ("to", &["to", "t"]), ("callid", &["call-id", "i"]), ("cseq", &["cseq"])] {
            if let Some(v) = header(&text, names) {
                keep.insert(k, v.to_string());
            }
        }
    }

    /// The payload with the placeholders filled in.
    fn fill(&mut self, i: usize, payload: &[u8], branch: &mut u64) -> Vec<u8> {
        if !payload.contains(&b'@') {
            return payload.to_vec();
        }
        let mut text = String::from_utf8_lossy(payload).into_owned();
        while text.contains("@BRANCH@") {
            *branch += 1;
            text = text.replacen("@BRANCH@", &format!("z9hG4bKfz{branch}"), 1);
        }
        for (ph, map, key) in [
            ("@VIA@", &self.req, "via"),
            ("@FROM@", &self.req, "from"),
            ("@TO@", &self.req, "to"),
            ("@CALLID@", &self.req, "callid"),
            ("@CSEQ@", &self.req, "cseq"),
            ("@RTO@", &self.resp, "to"),
            ("@RCALLID@", &self.resp, "callid"),
        ] {
            if text.contains(ph) {
                text = text.replace(ph, map.get(key).map_or("x", String::as_str));
            }
        }
        if text.contains("@CONTACT@") {
            text = text.replace("@CONTACT@", self.contact.as_deref().unwrap_or("sip:x@127.0.0.1"));
        }
        if text.contains("@AUTH@") {
            let mut words = text.split(' ');
            let method = words.next().unwrap_or("").to_string();
            let uri = words.next().unwrap_or("").to_string();
            self.nc += 1;
            let mut c = Credentials {
                username: format!("{}", 1001 + i),
                realm: "ctibox".into(),
                nonce: self.nonce.clone().unwrap_or_else(|| "0".into()),
                uri,
                qop: Some("auth".into()),
                nc: Some(format!("{:08x}", self.nc)),
                cnonce: Some("fzc".into()),
                ..Default::default()
            };
            c.response = expected_response(Algorithm::Md5, &ha1(Algorithm::Md5, &c.username, &c.realm, &password(i)), &method, &c);
            let value = format!(
                "Digest username=\"{}\", realm=\"ctibox\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm=MD5, qop=auth, nc={}, cnonce=\"fzc\"",
                c.username,
                c.nonce,
                c.uri,
                c.response,
                c.nc.as_deref().unwrap_or_default()
            );
            text = text.replace("@AUTH@", &value);
        }
        // Content-Length as written by the seed may no longer fit: a phone computes it.
        if let Some(at) = text.find("\r\n\r\n") {
            let body = text.len() - at - 4;
            text = text.replace("@LEN@", &body.to_string());
        }
        text.into_bytes()
    }
}

struct Harness {
    engine: Engine,
    now: Time,
    phones: Vec<Phone>,
    branch: u64,
    /// The last `call` named in a CTI message, for @CALL@.
    call: String,
    /// Whether the input being handled parsed as SIP (or was not SIP).
    strict: bool,
    /// Messages sent in answer to unparsable SIP.
    lax: Vec<Vec<u8>>,
    /// Secret checks handed out, answered after the drain.
    verify: Vec<VerifyJob>,
}

/// FUZZ_TRACE=1 prints every input and output (to see what a seed reaches).
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

impl Harness {
    fn drain(&mut self) {
        let mut n = 0;
        while let Some(o) = self.engine.poll_output() {
            n += 1;
            if trace() {
                match &o {
                    Output::Transmit { to, bytes, .. } => eprintln!("<< SIP to {to}\n{}", String::from_utf8_lossy(bytes)),
                    o => eprintln!("<< {o:?}"),
                }
            }
            assert!(n <= MAX_OUTPUTS, "more than {MAX_OUTPUTS} outputs for one input");
            match o {
                Output::Transmit { to, bytes, .. } => {
                    assert!(bytes.len() <= ctibox::limits::SIP_MAX_MESSAGE, "a {} byte SIP message", bytes.len());
                    // The best-effort answer to bytes that did not parse echoes what
                    // could be read of them (a 505 keeps a SIP/7.0 Via): exempt, and so
                    // are its retransmissions.
                    if !self.strict || self.lax.contains(&bytes) {
                        self.lax.push(bytes.clone());
                    } else if let Err(e) = parse_message(&bytes) {
                        panic!("the engine sent SIP that does not parse ({e}):\n{}", String::from_utf8_lossy(&bytes));
                    }
                    if let Some(p) = (0..SOURCES).find(|&i| source(i) == to) {
                        self.phones[p].saw(&bytes);
                    }
                }
                Output::CtiSend { text, .. } => {
                    assert!(!text.contains('\n'), "a CTI message must be one line: {text:?}");
                    assert!(text.len() <= ctibox::limits::CTI_MAX_LINE, "a {} byte CTI message", text.len());
                    match serde_json::from_str::<serde_json::Value>(&text) {
                        Ok(v) => {
                            if let Some(c) = v["call"].as_str() {
                                self.call = c.to_string();
                            }
                        }
                        Err(e) => panic!("the engine sent CTI text that is not JSON ({e}): {text}"),
                    }
                }
                Output::HttpResponse { body, .. } => assert!(body.len() <= ctibox::limits::HTTP_MAX_REQUEST),
                Output::Close { .. } | Output::Persist { .. } | Output::Media(_) | Output::Replicate(_) | Output::Analog(_) => {}
                // The shell's verifier, played here: the verdict comes back once the
                // outputs are drained, as the real driver does it.
                Output::VerifySecret(job) => self.verify.push(job),
            }
        }
        while let Some(job) = self.verify.pop() {
            let verdict = if ctibox::config::verify_phc(&job.phc, &job.presented) { Verdict::Match } else { Verdict::Mismatch };
            self.engine.handle_input(self.now, Input::SecretVerified { ticket: job.ticket, verdict });
            self.drain();
        }
    }

    fn input(&mut self, input: Input) {
        let timeout = matches!(input, Input::Timeout);
        if trace() {
            eprintln!(">> at {:?}: {input:?}", self.now);
        }
        self.engine.handle_input(self.now, input);
        self.drain();
        if timeout {
            if let Some(t) = self.engine.poll_timeout() {
                assert!(t > self.now, "after a Timeout at {:?} the next deadline is {t:?}", self.now);
            }
        }
    }

    fn record(&mut self, rec: &[u8]) {
        let Some((&kind, rest)) = rec.split_first() else { return };
        let (sel, payload) = rest.split_first().map_or((0, &[][..]), |(s, p)| (usize::from(*s), p));
        let kind = match kind {
            b'U' | b'T' | b'O' | b'M' | b'C' | b'W' | b'X' | b'H' => kind,
            k => b"UTOMCWXH"[usize::from(k) % 8],
        };
        let local = SocketAddr::from(([127, 0, 0, 1], 5060));
        match kind {
            b'U' | b'T' => {
                let i = sel % SOURCES;
                let bytes = self.phones[i].fill(i, payload, &mut self.branch);
                let (transport, conn) = if kind == b'U' { (Transport::Udp, None) } else { (Transport::Tcp, Some(ConnId(10 + i as u64))) };
                self.strict = parse_message(&bytes).is_ok();
                self.input(Input::Sip { transport, conn, from: source(i), local, bytes });
                self.strict = true;
            }
            b'O' => {
                let conn = ConnId(1 + sel as u64 % CTI_CONNS);
                let peer = SocketAddr::from(([127, 0, 0, 1], 40000 + conn.0 as u16));
                self.input(Input::CtiOpened { conn, peer, transport: CtiTransport::Tcp });
            }
            b'M' => {
                let conn = ConnId(1 + sel as u64 % CTI_CONNS);
                let text = String::from_utf8_lossy(payload).replace("@SECRET@", SECRET).replace("@CALL@", &self.call);
                self.input(Input::CtiMessage { conn, text });
            }
            b'C' => self.input(Input::ConnClosed { conn: ConnId(1 + sel as u64 % CTI_CONNS) }),
            b'L' => self.input(Input::Load { busy: sel % 2 == 1 }),
            b'W' => {
                self.now = self.now + Duration::from_millis(1 << (sel % 24));
                self.input(Input::Timeout);
            }
            b'X' => {
                if let Some(t) = self.engine.poll_timeout() {
                    self.now = self.now.max(t);
                }
                self.input(Input::Timeout);
            }
            _ => {
                let path = String::from_utf8_lossy(payload).into_owned();
                self.input(Input::Http { conn: ConnId(50), request: HttpRequest { method: "GET".into(), path, body: Vec::new() } });
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let engine = Engine::new(config(), EngineRng::seed_from_u64(7), Time::ZERO, 0, Restored::default());
    let mut h = Harness { engine, now: Time::ZERO, phones: (0..SOURCES).map(|_| Phone::default()).collect(), branch: 0, call: String::new(), strict: true, lax: Vec::new(), verify: Vec::new() };
    let mut rest = data;
    let mut n = 0;
    while !rest.is_empty() && n < 64 {
        let (rec, next) = match rest.windows(4).position(|w| w == b"\n%%\n") {
            Some(at) => (&rest[..at], &rest[at + 4..]),
            None => (rest, &[][..]),
        };
        h.record(rec);
        rest = next;
        n += 1;
    }
    // Whatever state was reached survives a failover: the snapshot goes through
    // postcard and into a fresh engine on another clock, whose own snapshot holds the
    // same calls, bindings and devices.
    let snap = h.engine.snapshot();
    let bytes = postcard::to_allocvec(&snap).expect("a snapshot encodes");
    let back: ctibox::core::snapshot::EngineSnapshot = postcard::from_bytes(&bytes).expect("a snapshot decodes");
    let restored = Engine::restore(config(), EngineRng::seed_from_u64(8), Time::from_millis(7_000), 0, back);
    let again = restored.snapshot();
    assert_eq!((again.calls.len(), again.bindings.len(), again.devices.len()), (snap.calls.len(), snap.bindings.len(), snap.devices.len()));
});
