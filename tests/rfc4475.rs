//! RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests): every message in
//! tests/corpus gets the handling INDEX.tsv describes, valid ones parse with the right
//! fields, every parsed one prints and re-parses to the same value, none panics.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ctibox::core::sip::*;
use std::path::Path;

#[derive(Debug, PartialEq)]
enum Expect {
    /// Parses and passes `check_request` (or is a well-formed response).
    Accept,
    /// Fails to parse: a request answered with this status (best-effort headers).
    ParseReject(u16),
    /// Fails to parse and cannot be answered (responses): dropped.
    Discard,
    /// Parses; `check_request` answers with this status.
    Check(u16),
}

fn expect(file: &str) -> Expect {
    use Expect::*;
    match file {
        "wsinv.dat" | "intmeth.dat" | "esc01.dat" | "escnull.dat" | "esc02.dat" | "lwsdisp.dat" | "longreq.dat"
        | "dblreq.dat" | "semiuri.dat" | "transports.dat" | "mpart01.dat" | "unreason.dat" | "noreason.dat" => Accept,
        // Tolerated variants RFC 4475 allows: extra SP in the request line, opaque Date.
        "lwsstart.dat" | "trws.dat" | "baddate.dat" => Accept,
        "badinv01.dat" | "ncl.dat" | "scalar02.dat" | "quotbal.dat" | "ltgtruri.dat" | "lwsruri.dat"
        | "escruri.dat" | "regbadct.dat" | "badaspec.dat" | "baddn.dat" | "mcl01.dat" => ParseReject(400),
        // No SIP version, no Via or CSeq: nothing to answer with.
        "test.dat" => Discard,
        "badvers.dat" => ParseReject(505),
        "scalarlg.dat" | "bigcode.dat" => Discard,
        "clerr.dat" | "mismatch01.dat" | "insuf.dat" | "multi01.dat" => Check(400),
        "mismatch02.dat" => Check(501),
        "unkscm.dat" | "novelsc.dat" => Check(416),
        "bext01.dat" => Check(420),
        "invut.dat" => Check(415),
        "sdp01.dat" => Check(406),
        // Parse and pass message checks; the transaction layer, registrar or auth
        // decide (badbranch: RFC 2543 matching; unksm2: registrar 400; regaut01: 401).
        "badbranch.dat" | "unksm2.dat" | "regaut01.dat" | "bcast.dat" | "zeromf.dat" | "cparam01.dat"
        | "cparam02.dat" | "regescrt.dat" | "inv2543.dat" => Accept,
        // RFC 5118
        "ipv6-bad" => ParseReject(400),
        f if !f.ends_with(".dat") => Accept,
        other => panic!("no expectation for {other}"),
    }
}

fn load(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(rel)).unwrap()
}

fn index(dir: &str) -> Vec<String> {
    let text = String::from_utf8(load(&format!("{dir}/INDEX.tsv"))).unwrap();
    text.lines().skip(1).filter_map(|l| l.split('\t').next()).map(str::to_string).collect()
}

fn outcome(bytes: &[u8]) -> (Expect, Option<Message>) {
    match parse_message(bytes) {
        Ok(Message::Request(r)) => match check_request(&r) {
            Ok(()) => (Expect::Accept, Some(Message::Request(r))),
            Err(rej) => {
                let resp = rej.response(&r, "t1");
                assert_eq!(resp.status, rej.code);
                (Expect::Check(rej.code), Some(Message::Request(r)))
            }
        },
        Ok(m @ Message::Response(_)) => (Expect::Accept, Some(m)),
        Err(e) => match answer_unparsable(bytes, &e, "t1") {
            Unparsable::Answer(resp) => {
                assert_eq!(resp.status, e.status());
                assert_eq!(resp.reason, e.to_string());
                // The answer copies the broken lines verbatim; its framing is sound.
                let wire = resp.to_bytes();
                assert!(wire.starts_with(format!("SIP/2.0 {} ", e.status()).as_bytes()) && wire.ends_with(b"\r\n\r\n"));
                (Expect::ParseReject(e.status()), None)
            }
            Unparsable::Drop => (Expect::Discard, None),
        },
    }
}

fn round_trip(m: &Message) {
    let printed = m.to_bytes();
    let again =
        parse_message(&printed).unwrap_or_else(|e| panic!("reprint fails: {e}\n{}", String::from_utf8_lossy(&printed)));
    assert_eq!(&again, m);
}

#[test]
fn rfc4475_every_message_gets_its_handling() {
    let files = index("rfc4475");
    assert_eq!(files.len(), 50);
    for f in files {
        let bytes = load(&format!("rfc4475/{f}"));
        let (got, msg) = outcome(&bytes);
        assert_eq!(got, expect(&f), "{f}");
        if let Some(m) = msg {
            round_trip(&m);
        }
    }
}

#[test]
fn rfc5118_every_message_gets_its_handling() {
    for f in index("rfc5118").into_iter().filter(|f| f.starts_with("wire/")) {
        let name = f.trim_start_matches("wire/");
        let (got, msg) = outcome(&load(&format!("rfc5118/{f}")));
        assert_eq!(got, expect(name), "{f}");
        if let Some(m) = msg {
            round_trip(&m);
        }
    }
}

fn req(file: &str) -> Request {
    match parse_message(&load(file)).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{file} is a response"),
    }
}

#[test]
fn the_whitespace_torture_invite_yields_every_field_rfc4475_describes() {
    let r = req("rfc4475/wsinv.dat");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.as_sip().unwrap().param("unknownparam"), Some(None));
    assert_eq!(r.to().unwrap().tag(), Some("1918181833n"));
    let from = r.from().unwrap();
    assert_eq!(from.display.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(r.max_forwards().unwrap(), Some(68));
    assert_eq!(r.cseq().unwrap(), CSeq { seq: 9, method: Method::Invite });
    let via = r.via().unwrap();
    assert_eq!(via.len(), 3);
    assert_eq!((via[0].transport.as_str(), via[0].branch()), ("UDP", Some("390skdjuw")));
    assert_eq!((via[1].transport.as_str(), via[1].branch()), ("TCP", Some("z9hG4bK9ikj8")));
    assert_eq!(via[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(r.headers.get(&HeaderName::Subject), Some(""));
    assert_eq!(
        r.headers.get(&HeaderName::Other("NewFangledHeader".into())),
        Some("newfangled value continued newfangled value")
    );
    let Some(Contact::Addrs(c)) = r.contact().unwrap() else { panic!() };
    assert_eq!(c[0].display.as_deref(), Some("Quoted string \"\""));
    assert_eq!((c[0].param("newparam"), c[0].q()), (Some(Some("newvalue")), Some(330)));
    assert_eq!(r.routes(HeaderName::Route).unwrap()[0].uri.as_sip().unwrap().param("unknownwith"), Some(Some("value")));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn unusual_but_valid_requests_yield_the_methods_escapes_and_bodies_rfc4475_describes() {
    let r = req("rfc4475/intmeth.dat");
    assert_eq!(r.method, Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into()));
    assert_eq!(r.cseq().unwrap().method, r.method);
    assert_eq!(r.to().unwrap().display.as_deref(), Some("BEL:\x07 NUL:\0 DEL:\x7f"));
    assert_eq!(r.call_id().unwrap(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");

    let r = req("rfc4475/esc01.dat");
    assert_eq!(r.uri.as_sip().unwrap().user_unescaped().unwrap(), b"sips:user@example.com");
    assert_eq!(r.to().unwrap().uri.as_sip().unwrap().user_unescaped().unwrap(), b"user");

    let r = req("rfc4475/escnull.dat");
    let Some(Contact::Addrs(c)) = r.contact().unwrap() else { panic!() };
    assert_eq!(c[1].uri.as_sip().unwrap().user_unescaped().unwrap(), b"\0\0");

    let r = req("rfc4475/esc02.dat");
    assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
    assert_eq!(r.headers.count(&HeaderName::Contact), 2);
    assert_eq!(r.headers.count(&HeaderName::Other("C%6Fntact".into())), 1);

    assert_eq!(req("rfc4475/lwsdisp.dat").from().unwrap().display.as_deref(), Some("caller"));
    let r = req("rfc4475/semiuri.dat");
    assert_eq!(r.uri.as_sip().unwrap().user.as_deref(), Some("user;par=u%40example.net"));
    assert!(r.uri.as_sip().unwrap().params.is_empty());

    let r = req("rfc4475/dblreq.dat");
    assert_eq!((r.method.clone(), r.body.len()), (Method::Register, 0));

    let r = req("rfc4475/transports.dat");
    let t: Vec<_> = r.via().unwrap().into_iter().map(|v| v.transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);

    let r = req("rfc4475/mpart01.dat");
    assert_eq!(Some(r.body.len()), r.content_length().unwrap());
    assert!(r.content_type().unwrap().unwrap().is("multipart", "mixed"));

    let r = req("rfc4475/longreq.dat");
    assert!(r.to().unwrap().display.unwrap().contains("extremeextreme"));
    assert_eq!(r.via().unwrap().len(), 34);
}

#[test]
fn responses_with_an_unusual_or_empty_reason_phrase_keep_it() {
    let Message::Response(r) = parse_message(&load("rfc4475/unreason.dat")).unwrap() else { panic!() };
    assert_eq!(r.status, 200);
    assert!(r.reason.starts_with("= 2**3 * 5**2 "));
    let Message::Response(r) = parse_message(&load("rfc4475/noreason.dat")).unwrap() else { panic!() };
    assert_eq!((r.status, r.reason.as_str()), (100, ""));
}

#[test]
fn application_cases_keep_unknown_extensions_schemes_params_and_rfc2543_forms() {
    let r = req("rfc4475/bext01.dat");
    let rej = check_request(&r).unwrap_err();
    let h = rej.header.unwrap();
    assert_eq!((h.name, h.value.as_str()), (HeaderName::Unsupported, "nothingSupportsThis, nothingSupportsThisEither"));

    let r = req("rfc4475/unksm2.dat");
    assert_eq!(r.to().unwrap().uri.scheme(), "isbn");
    assert_eq!(r.from().unwrap().uri.scheme(), "http");

    let r = req("rfc4475/regaut01.dat");
    let a = r.auth(HeaderName::Authorization).unwrap();
    assert_eq!(a[0].scheme, "NoOneKnowsThisScheme");

    let r = req("rfc4475/cparam01.dat");
    let Some(Contact::Addrs(c)) = r.contact().unwrap() else { panic!() };
    assert_eq!(c[0].param("unknownparam"), Some(None));
    let r = req("rfc4475/cparam02.dat");
    let Some(Contact::Addrs(c)) = r.contact().unwrap() else { panic!() };
    assert_eq!(c[0].uri.as_sip().unwrap().param("unknownparam"), Some(None));
    let r = req("rfc4475/regescrt.dat");
    let Some(Contact::Addrs(c)) = r.contact().unwrap() else { panic!() };
    assert_eq!(c[0].uri.as_sip().unwrap().headers.as_deref(), Some("Route=%3Csip:sip.example.com%3E"));

    let r = req("rfc4475/inv2543.dat");
    assert!(r.top_via().unwrap().branch().is_none());
    let raw = load("rfc4475/inv2543.dat");
    assert!(r.body.starts_with(b"v=0") && raw.ends_with(&r.body), "no Content-Length: body is the rest");
    assert!(!r.top_via().unwrap().has_rfc3261_branch());
    assert!(!req("rfc4475/badbranch.dat").top_via().unwrap().has_rfc3261_branch());
}

#[test]
fn rfc5118_ipv6_requests_yield_their_hosts_ports_and_received_params() {
    let uri = |f: &str| req(f).uri.as_sip().unwrap().clone();
    let u = uri("rfc5118/wire/port-ambiguous");
    assert_eq!((u.host, u.port), (Host::V6("2001:db8::10:5070".parse().unwrap()), None));
    let u = uri("rfc5118/wire/port-unambiguous");
    assert_eq!((u.host, u.port), (Host::V6("2001:db8::10".parse().unwrap()), Some(5070)));
    let v = req("rfc5118/wire/via-received-param-with-delim").top_via().unwrap();
    assert_eq!(v.received(), Some("[2001:db8::9:255]"));
    let v = req("rfc5118/wire/via-received-param-no-delim").top_via().unwrap();
    assert_eq!(v.received(), Some("2001:db8::9:255"));
    let u = uri("rfc5118/wire/ipv6-bug-abnf-3-colons");
    assert_eq!(u.host, Host::V6("2001:db8::192.0.2.1".parse().unwrap()));
    let v = req("rfc5118/wire/mult-ip-in-header").via().unwrap();
    assert_eq!((v[0].port, v[2].received()), (Some(6050), Some("192.0.2.200")));
    let v = req("rfc5118/wire/ipv4-mapped-ipv6").top_via().unwrap();
    assert_eq!(v.host, Host::V6("::ffff:192.0.2.10".parse().unwrap()));
}

#[test]
fn unparsable_requests_are_answered_with_their_reason() {
    let bytes = load("rfc4475/badinv01.dat");
    let err = parse_message(&bytes).unwrap_err();
    let Unparsable::Answer(resp) = answer_unparsable(&bytes, &err, "abc") else { panic!() };
    assert_eq!(resp.status, 400);
    assert_eq!(resp.reason, "Malformed Via Header");
    assert_eq!(resp.headers.get(&HeaderName::CallId), Some("badinv01.0ha0isndaksdjasdf3234nas"));
    assert_eq!(resp.headers.get(&HeaderName::To), Some("sip:j.user@example.com;tag=abc"));
    let bytes = load("rfc4475/badvers.dat");
    let err = parse_message(&bytes).unwrap_err();
    assert_eq!(err, ParseError::BadVersion);
    let Unparsable::Answer(resp) = answer_unparsable(&bytes, &err, "abc") else { panic!() };
    assert_eq!((resp.status, resp.reason.as_str()), (505, "Version Not Supported"));
}
