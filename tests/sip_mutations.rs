//! The fuzz property as an ordinary test: thousands of deterministic, seeded mutations
//! of the torture corpus. For each: parsing never panics; a parsed message prints and
//! re-parses to the same value; an unparsable one gets an answer or a drop, and a
//! parsed request gets `check_request`'s verdict, without panicking.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ctibox::core::sip::*;
use std::path::Path;

/// splitmix64: small, deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\r\n ",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"\"",
    b"\\",
    b"<",
    b">",
    b"[",
    b"]",
    b"@",
    b"%",
    b"%0",
    b"=",
    b"/",
    b"?",
    b"SIP/2.0",
    b"sip:",
    b"tel:",
    b";tag=",
    b";branch=z9hG4bK",
    b"\0",
    b"\xff",
    b"\xc3",
    b"99999999999",
    b"-1",
    b"[::1]",
    b"Content-Length: 5\r\n",
    b"l: 0\r\n",
    b"v: SIP/2.0/UDP h\r\n",
    b"*",
];

fn mutate(rng: &mut Rng, seed: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = rng.next() as u8;
            }
            1 if !b.is_empty() => {
                let n = 1 + rng.below(8);
                let end = (at + n).min(b.len());
                b.drain(at.min(end)..end);
            }
            2 => {
                let s = INTERESTING[rng.below(INTERESTING.len())];
                b.splice(at..at, s.iter().copied());
            }
            3 if !b.is_empty() => {
                // duplicate a line
                let start = b[..at.min(b.len())].iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
                let end = b[start..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| start + p + 1);
                let line = b[start..end].to_vec();
                b.splice(end..end, line);
            }
            4 => {
                // splice a piece of another message
                let other = &corpus[rng.below(corpus.len())];
                let s = rng.below(other.len());
                let e = (s + rng.below(64)).min(other.len());
                b.splice(at..at, other[s..e].iter().copied());
            }
            5 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = b[i].to_ascii_uppercase() ^ (rng.below(2) as u8 * 0x20);
            }
            _ => b.truncate(at),
        }
    }
    b
}

fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out = Vec::new();
    for dir in ["rfc4475", "rfc5118/wire"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir)).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "tsv")) {
            out.push(std::fs::read(p).unwrap());
        }
    }
    out
}

/// The property the fuzz target checks too (fuzz/fuzz_targets/sip_parse.rs).
pub fn property(data: &[u8]) {
    match parse_message(data) {
        Ok(m) => {
            let printed = m.to_bytes();
            let again = parse_message(&printed).unwrap_or_else(|e| {
                panic!(
                    "reprint fails: {e}\n{:?}\n{:?}",
                    String::from_utf8_lossy(data),
                    String::from_utf8_lossy(&printed)
                )
            });
            assert_eq!(again, m, "round trip differs for {:?}", String::from_utf8_lossy(data));
            if let Message::Request(r) = &m {
                if let Err(rej) = check_request(r) {
                    let _ = rej.response(r, "x").to_bytes();
                }
            }
            let _ = (m.via(), m.from(), m.to(), m.cseq(), m.contact(), m.expires(), m.content_type());
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = answer_unparsable(data, &e, "x");
        }
    }
}

#[test]
fn seeded_mutations_keep_the_round_trip_property() {
    let corpus = corpus();
    let mut rng = Rng(0x5eed_c71b);
    let (mut parsed, mut total) = (0, 0);
    for _ in 0..6000 {
        let seed = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, seed, &corpus);
        total += 1;
        if parse_message(&input).is_ok() {
            parsed += 1;
        }
        property(&input);
    }
    // Sanity: the mutations are neither all fatal nor all harmless.
    assert!(parsed > total / 10 && parsed < total, "parsed {parsed} of {total}");
}

#[test]
fn corpus_itself_satisfies_the_property() {
    for m in corpus() {
        property(&m);
    }
}

/// The parser's validation uses checks that build nothing (`Via::is_valid`,
/// `NameAddr::is_valid`, `Uri::is_valid`, `Host::is_valid`): on every header value,
/// list element and URI-looking piece of the corpus and its mutations, each check
/// must agree with its parser.
#[test]
fn validity_checks_agree_with_the_parsers_on_mutated_values() {
    fn pieces(data: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(data);
        let mut out = Vec::new();
        for line in text.split('\n') {
            let line = line.trim_end_matches('\r');
            out.extend(line.split(' ').map(str::to_string));
            if let Some((_, v)) = line.split_once(':') {
                let v = v.trim_matches([' ', '\t']);
                out.push(v.to_string());
                if let Ok(parts) = text::split_commas(v) {
                    out.extend(parts.iter().map(|p| p.to_string()));
                }
                for (i, _) in v.match_indices('<') {
                    let inner = &v[i + 1..];
                    out.push(inner.split('>').next().unwrap_or(inner).to_string());
                }
                for (i, _) in v.match_indices(';') {
                    out.push(v[i..].to_string());
                }
            }
        }
        out
    }
    let corpus = corpus();
    let mut rng = Rng(0x0c4e_c4ed);
    let (mut checked, mut valid) = (0usize, 0usize);
    let mut inputs: Vec<Vec<u8>> = corpus.clone();
    for _ in 0..3000 {
        let seed = &corpus[rng.below(corpus.len())];
        inputs.push(mutate(&mut rng, seed, &corpus));
    }
    for input in &inputs {
        for p in pieces(input) {
            checked += 1;
            assert_eq!(Via::is_valid(&p), Via::parse(&p).is_some(), "Via {p:?}");
            assert_eq!(NameAddr::is_valid(&p), NameAddr::parse(&p).is_some(), "name-addr {p:?}");
            assert_eq!(Uri::is_valid(&p), Uri::parse(&p).is_some(), "URI {p:?}");
            assert_eq!(Host::is_valid(&p), Host::parse(&p).is_some(), "host {p:?}");
            assert_eq!(uri::hostport_ok(&p), uri::split_hostport(&p).is_some(), "hostport {p:?}");
            assert_eq!(text::params_ok(&p), text::parse_params(&p).is_ok(), "params {p:?}");
            valid += usize::from(NameAddr::is_valid(&p)) + usize::from(Via::is_valid(&p));
        }
    }
    // Sanity: both verdicts occur often.
    assert!(valid > checked / 50 && valid < checked, "{valid} valid of {checked}");
}
