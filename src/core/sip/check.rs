//! Message-level checks a UAS makes before the transaction user sees a request
//! (RFC 3261 §8.2, RFC 4475 §3.3), and best-effort answers to requests that did not
//! parse. Pure: takes a parsed request, returns the rejection to send.

use super::error::ParseError;
use super::msg::{Header, Headers, Request, Response, SipHeaders};
use super::name::{HeaderName, Method};
use super::print::reason_phrase;
use super::uri::Uri;
use std::fmt;

/// Why a request is refused, and the extra header the answer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    pub reason: String,
    /// A header to add to the answer (Unsupported for 420, Accept for 415/406).
    pub header: Option<Header>,
}

impl Rejection {
    fn new(code: u16, reason: impl Into<String>) -> Rejection {
        Rejection { code, reason: reason.into(), header: None }
    }
    fn with(mut self, name: HeaderName, value: String) -> Rejection {
        self.header = Some(Header { name, value: value.into() });
        self
    }
    /// The response to send (To tag added for anything but 100).
    pub fn response(&self, req: &Request, to_tag: &str) -> Response {
        let mut r = Response::to_request(req, self.code, Some(to_tag));
        r.reason = self.reason.clone();
        if let Some(h) = &self.header {
            r.headers.add(h.name.clone(), h.value.clone());
        }
        r
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

/// What this element accepts.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'a> {
    /// Option tags understood in Require (RFC 3261 §8.2.2.3).
    pub supported: &'a [&'a str],
    /// Body types accepted (`type/subtype`, lower case).
    pub content_types: &'a [&'a str],
}

impl Policy<'static> {
    pub const DEFAULT: Policy<'static> = Policy {
        supported: &["path", "replaces"],
        content_types: &[
            "application/sdp",
            "multipart/mixed",
            "multipart/alternative",
            "application/dtmf-relay",
            "message/sipfrag",
            "text/plain",
        ],
    };
}

/// `check_request_with(req, &Policy::DEFAULT)`.
pub fn check_request(req: &Request) -> Result<(), Rejection> {
    check_request_with(req, &Policy::DEFAULT)
}

/// Message-level checks, in RFC 3261 §8.2 order: mandatory and singleton headers, CSeq
/// method, Content-Length against the datagram, URI scheme (416), Require (420),
/// Max-Forwards, body type and encoding (415), Accept for INVITE (406).
pub fn check_request_with(req: &Request, policy: &Policy<'_>) -> Result<(), Rejection> {
    let h = &req.headers;
    // How many lines of each header checked below, counted in one pass.
    const COUNTED: [HeaderName; 7] = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::MaxForwards,
        HeaderName::ContentType,
    ];
    let mut count = [0usize; COUNTED.len()];
    for line in &h.0 {
        let i = match line.name {
            HeaderName::Via => 0,
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 3,
            HeaderName::CSeq => 4,
            HeaderName::MaxForwards => 5,
            HeaderName::ContentType => 6,
            _ => continue,
        };
        count[i] += 1;
    }
    for (name, n) in COUNTED.iter().zip(count).take(5) {
        if n == 0 {
            return Err(Rejection::new(400, format!("Missing {name} Header")));
        }
    }
    for (name, n) in COUNTED.iter().zip(count).skip(1) {
        if n > 1 {
            return Err(Rejection::new(400, format!("Multiple {name} Headers")));
        }
    }
    let cseq = req.cseq().map_err(bad)?;
    if cseq.method != req.method {
        if matches!(req.method, Method::Other(_)) {
            return Err(Rejection::new(501, reason_phrase(501)));
        }
        return Err(Rejection::new(400, "CSeq Method Does Not Match Request"));
    }
    if let Some(cl) = req.content_length().map_err(bad)? {
        if cl > req.body.len() {
            return Err(Rejection::new(400, "Content-Length Exceeds Message"));
        }
    }
    if !matches!(req.uri, Uri::Sip(_) | Uri::Tel(_)) {
        return Err(Rejection::new(416, reason_phrase(416)));
    }
    if !matches!(req.method, Method::Ack | Method::Cancel) {
        let required = req.tokens(HeaderName::Require).map_err(bad)?;
        let unknown: Vec<String> =
            required.into_iter().filter(|t| !policy.supported.iter().any(|s| s.eq_ignore_ascii_case(t))).collect();
        if !unknown.is_empty() {
            return Err(Rejection::new(420, reason_phrase(420)).with(HeaderName::Unsupported, unknown.join(", ")));
        }
    }
    if req.max_forwards().map_err(bad)? == Some(0) && req.method == Method::Invite {
        return Err(Rejection::new(483, reason_phrase(483)));
    }
    if !req.body.is_empty() {
        let accept = || policy.content_types.join(", ");
        let Some(ct) = req.content_type().map_err(bad)? else {
            return Err(Rejection::new(400, "Missing Content-Type Header"));
        };
        if !policy.content_types.iter().any(|t| t.split_once('/').is_some_and(|(a, b)| ct.is(a, b) && ct.mtype != "*"))
        {
            return Err(Rejection::new(415, reason_phrase(415)).with(HeaderName::Accept, accept()));
        }
        let encodings = req.tokens(HeaderName::ContentEncoding).map_err(bad)?;
        if encodings.iter().any(|e| !e.eq_ignore_ascii_case("identity")) {
            return Err(Rejection::new(415, reason_phrase(415)).with(HeaderName::AcceptEncoding, "identity".into()));
        }
    }
    if req.method == Method::Invite && h.count(&HeaderName::Accept) > 0 {
        let list = h.list(&HeaderName::Accept).map_err(bad)?;
        let sdp_ok =
            list.iter().any(|a| super::headers::MediaType::parse(a).is_some_and(|m| m.is("application", "sdp")));
        if !list.is_empty() && !sdp_ok {
            return Err(Rejection::new(406, reason_phrase(406)).with(HeaderName::Accept, "application/sdp".into()));
        }
    }
    Ok(())
}

fn bad(e: ParseError) -> Rejection {
    Rejection::new(400, e.to_string())
}

/// What to do with bytes that failed `parse_message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unparsable {
    /// A request with enough of Via/From/To/Call-ID/CSeq to answer: send this.
    Answer(Response),
    /// A response, or a request too broken to answer: drop it and count it.
    Drop,
}

/// Best-effort answer to a message that failed to parse (RFC 3261 §8.2, RFC 4475
/// §3.1.2): if it looks like a request and its Via, From, To, Call-ID and CSeq lines
/// can be found, answer `err.status()` with `err` as the reason phrase, copying those
/// lines verbatim. Responses and hopeless requests are dropped.
pub fn answer_unparsable(bytes: &[u8], err: &ParseError, to_tag: &str) -> Unparsable {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(crate::limits::SIP_MAX_MESSAGE)]);
    let text = text.trim_start_matches(['\r', '\n']);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let Some(first) = lines.next() else { return Unparsable::Drop };
    if first.starts_with("SIP/") || first.is_empty() {
        return Unparsable::Drop;
    }
    let mut raw: Vec<Header> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = raw.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
            }
            continue;
        }
        if raw.len() >= crate::limits::SIP_MAX_HEADERS {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            raw.push(Header { name: HeaderName::parse(n.trim()), value: v.trim().into() });
        }
    }
    let mut headers = Headers::default();
    for name in [HeaderName::Via, HeaderName::From, HeaderName::To, HeaderName::CallId, HeaderName::CSeq] {
        let mut found = false;
        for h in raw.iter().filter(|h| {
            h.name == name
                && !h.value.is_empty()
                && h.value.len() <= crate::limits::SIP_MAX_LINE
                && !h.value.chars().any(|c| c.is_control() && c != '\t')
        }) {
            if found && name != HeaderName::Via {
                break;
            }
            let mut value = h.value.clone();
            if name == HeaderName::To && !value.contains(";tag=") {
                value.push_str(";tag=");
                value.push_str(to_tag);
            }
            headers.push(name.clone(), value);
            found = true;
        }
        if !found {
            return Unparsable::Drop;
        }
    }
    headers.push(HeaderName::ContentLength, "0");
    Unparsable::Answer(Response { status: err.status(), reason: err.to_string(), headers, body: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sip::{parse_message, Message};

    fn req(extra: &str, body: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{extra}\
Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match parse_message(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    fn code(r: &Request) -> Option<u16> {
        check_request(r).err().map(|r| r.code)
    }

    #[test]
    fn bad_body_headers_max_forwards_0_unsupported_require_or_unmet_accept_are_rejected() {
        assert_eq!(code(&req("", "")), None);
        assert_eq!(code(&req("Content-Type: application/sdp\r\n", "v=0\r\n")), None);
        assert_eq!(code(&req("", "v=0\r\n")), Some(400), "body without Content-Type");
        assert_eq!(code(&req("Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n", "x")), Some(415));
        assert_eq!(code(&req("Content-Type: Application/SDP\r\nContent-Encoding: identity\r\n", "x")), None);
        let mut r = req("", "");
        r.headers.set(HeaderName::MaxForwards, "0");
        assert_eq!(code(&r), Some(483));
        r.method = Method::Options;
        r.headers.set(HeaderName::CSeq, "1 OPTIONS");
        assert_eq!(code(&r), None, "a UAS answers OPTIONS with Max-Forwards 0 itself");
        assert_eq!(code(&req("Require: replaces\r\n", "")), None);
        let rej = check_request(&req("Require: 100rel, foo\r\n", "")).unwrap_err();
        assert_eq!(rej.header.unwrap().value, "100rel, foo");
        assert_eq!(code(&req("Accept: application/sdp, text/plain\r\n", "")), None);
        assert_eq!(code(&req("Accept: text/plain\r\n", "")), Some(406));
    }

    #[test]
    fn missing_headers_are_named_before_duplicated_ones_in_a_fixed_order() {
        let reason = |r: &Request| check_request(r).err().map(|r| (r.code, r.reason));
        let mut r = req("", "");
        r.headers.push(HeaderName::From, "<sip:c@example.com>;tag=2");
        assert_eq!(reason(&r), Some((400, "Multiple From Headers".into())));
        r.headers.remove(&HeaderName::CallId);
        assert_eq!(reason(&r), Some((400, "Missing Call-ID Header".into())));
        r.headers.remove(&HeaderName::Via);
        assert_eq!(reason(&r), Some((400, "Missing Via Header".into())));
        let mut r = req("Content-Type: application/sdp\r\nContent-Type: application/sdp\r\n", "x");
        assert_eq!(reason(&r), Some((400, "Multiple Content-Type Headers".into())));
        r.headers.push(HeaderName::MaxForwards, "70");
        assert_eq!(reason(&r), Some((400, "Multiple Max-Forwards Headers".into())));
        let mut r = req("", "");
        r.headers.push(HeaderName::Via, "SIP/2.0/UDP h2;branch=z9hG4bK2");
        assert_eq!(reason(&r), None, "Via may repeat");
    }

    #[test]
    fn rejection_response_carries_extra_header_and_tag() {
        let r = req("Require: foo\r\n", "");
        let resp = check_request(&r).unwrap_err().response(&r, "t9");
        let wire = String::from_utf8(resp.to_bytes()).unwrap();
        assert!(wire.starts_with("SIP/2.0 420 Bad Extension\r\n"));
        assert!(wire.contains("\r\nTo: <sip:bob@example.com>;tag=t9\r\n"));
        assert!(wire.ends_with("Unsupported: foo\r\nContent-Length: 0\r\n\r\n"));
    }

    #[test]
    fn unparsable_responses_and_headerless_requests_are_dropped() {
        let e = ParseError::BadStatusCode;
        assert_eq!(answer_unparsable(b"SIP/2.0 2000 OK\r\n\r\n", &e, "t"), Unparsable::Drop);
        assert_eq!(answer_unparsable(b"INVITE x\r\nTo: a\r\n\r\n", &e, "t"), Unparsable::Drop);
        assert_eq!(answer_unparsable(b"", &e, "t"), Unparsable::Drop);
        let bytes = b"BAD\r\nv: SIP/2.0/UDP h\r\nf: a\r\nt: b\r\ni: c\r\nCSeq: 1 X\r\n\r\n";
        let Unparsable::Answer(r) = answer_unparsable(bytes, &ParseError::BadRequestLine, "t") else { panic!() };
        assert_eq!(r.status, 400);
        assert_eq!(r.headers.get(&HeaderName::To), Some("b;tag=t"));
    }
}
