//! Bytes to `Message`: start line, header lines (LWS folding, compact names,
//! case-insensitive names), Content-Length framing of the body, and validation of the
//! headers every element relies on (Via, From, To, Call-ID, CSeq, Max-Forwards,
//! Contact, Route, Record-Route, Content-Type). Bounded by `limits`; never panics.

use super::error::ParseError;
use super::headers::{CSeq, NameAddr, Via};
use super::msg::{Header, Headers, Message, Request, Response};
use super::name::{HeaderName, Method};
use super::text;
use super::uri::Uri;
use crate::limits;

/// Parses one SIP message (a datagram, or one message framed from a stream).
///
/// Leading CRLFs are skipped (RFC 3261 §7.5). With Content-Length, octets past the
/// body are ignored (RFC 4475 §3.1.1.8); a body shorter than Content-Length is kept as
/// is and reported by `check_request` (datagram rule, RFC 3261 §18.3). Without
/// Content-Length, the body is the rest of the bytes.
pub fn parse_message(bytes: &[u8]) -> Result<Message, ParseError> {
    if bytes.len() > limits::SIP_MAX_MESSAGE {
        return Err(ParseError::MessageTooLarge);
    }
    let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n').ok_or(ParseError::Empty)?;
    let bytes = &bytes[start..];
    let (head_len, body_start) = find_head_end(bytes);
    let head = std::str::from_utf8(&bytes[..head_len]).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = Lines { s: head, pos: 0 };
    let start_line = lines.next_line()?.ok_or(ParseError::Empty)?;
    let start = match start_line.strip_prefix("SIP/") {
        Some(rest) => Err(parse_status_line(rest)?),
        None => Ok(parse_request_line(start_line)?),
    };
    let headers = parse_headers(&mut lines)?;
    let body = frame_body(&headers, &bytes[body_start.min(bytes.len())..])?;
    validate(&headers)?;
    Ok(match start {
        Ok((method, uri)) => Message::Request(Request { method, uri, headers, body }),
        Err((status, reason)) => Message::Response(Response { status, reason, headers, body }),
    })
}

/// Returns (length of the head without the blank line, offset of the body). A head
/// that runs to the end without a blank line is accepted as having no body.
fn find_head_end(b: &[u8]) -> (usize, usize) {
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'\n') {
        let nl = i + off;
        let next = nl + 1;
        if b.get(next) == Some(&b'\n') {
            return (next, next + 1);
        }
        if b.get(next) == Some(&b'\r') && b.get(next + 1) == Some(&b'\n') {
            return (next, next + 2);
        }
        i = next;
    }
    (b.len(), b.len())
}

struct Lines<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lines<'a> {
    /// Next physical line without its CRLF / LF.
    fn next_line(&mut self) -> Result<Option<&'a str>, ParseError> {
        if self.pos >= self.s.len() {
            return Ok(None);
        }
        let rest = &self.s[self.pos..];
        let (line, adv) = match text::find_byte(rest, b'\n') {
            Some(n) => (&rest[..n], n + 1),
            None => (rest, rest.len()),
        };
        self.pos += adv;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > limits::SIP_MAX_LINE {
            return Err(ParseError::LineTooLong);
        }
        if line.bytes().any(|b| b == b'\r') {
            return Err(ParseError::BadCharacter);
        }
        Ok(Some(line))
    }
    fn peek_continuation(&self) -> bool {
        self.s.as_bytes().get(self.pos).is_some_and(|&b| b == b' ' || b == b'\t')
    }
}

fn parse_headers(lines: &mut Lines<'_>) -> Result<Headers, ParseError> {
    // Room for a typical message's headers, so the list does not regrow line by line.
    let mut headers = Vec::with_capacity(16);
    while let Some(line) = lines.next_line()? {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            return Err(ParseError::BadHeaderLine); // folding with nothing to fold into
        }
        let colon = text::find_byte(line, b':').ok_or(ParseError::BadHeaderLine)?;
        let name = line[..colon].trim_end_matches(text::is_ws_char);
        if !text::is_token_str(name) {
            return Err(ParseError::BadHeaderLine);
        }
        let mut value = super::msg::Value::from(line[colon + 1..].trim_matches(text::is_ws_char));
        while lines.peek_continuation() {
            let cont = lines.next_line()?.unwrap_or("").trim_matches(text::is_ws_char);
            if !cont.is_empty() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(cont);
            }
            if value.len() > limits::SIP_MAX_LINE {
                return Err(ParseError::LineTooLong);
            }
        }
        if headers.len() == limits::SIP_MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        headers.push(Header { name: HeaderName::parse(name), value });
    }
    Ok(Headers(headers))
}

fn frame_body(headers: &Headers, rest: &[u8]) -> Result<Vec<u8>, ParseError> {
    let mut length: Option<usize> = None;
    for v in headers.get_all(&HeaderName::ContentLength) {
        let n = text::parse_u64(v, limits::SIP_MAX_CONTENT_LENGTH as u64).ok_or(ParseError::BadContentLength)? as usize;
        if length.is_some_and(|l| l != n) {
            return Err(ParseError::ConflictingContentLength);
        }
        length = Some(n);
    }
    Ok(match length {
        Some(n) => rest[..n.min(rest.len())].to_vec(),
        None => rest.to_vec(),
    })
}

fn parse_status_line(rest: &str) -> Result<(u16, String), ParseError> {
    // rest follows "SIP/": "2.0 200 OK"
    let (version, after) = rest.split_once(' ').ok_or(ParseError::BadStatusLine)?;
    check_version(version).map_err(|e| if e == ParseError::BadRequestLine { ParseError::BadStatusLine } else { e })?;
    let after = after.trim_start_matches(' ');
    let (code, reason) = after.split_once(' ').unwrap_or((after, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadStatusCode);
    }
    let status: u16 = code.parse().map_err(|_| ParseError::BadStatusCode)?;
    if !(100..=699).contains(&status) {
        return Err(ParseError::BadStatusCode);
    }
    if reason.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(ParseError::BadCharacter);
    }
    Ok((status, reason.trim_matches(text::is_ws_char).to_string()))
}

/// `version` is what follows "SIP/". 2.0 is fine; another `d.d` is a 505; else 400.
fn check_version(version: &str) -> Result<(), ParseError> {
    if version == "2.0" {
        return Ok(());
    }
    match version.split_once('.') {
        Some((a, b))
            if !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit()) =>
        {
            Err(ParseError::BadVersion)
        }
        _ => Err(ParseError::BadRequestLine),
    }
}

fn parse_request_line(line: &str) -> Result<(Method, Uri), ParseError> {
    // Tolerates runs of SP and trailing SP (RFC 4475 §3.1.2.9/10 allow either way).
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadRequestLine);
    };
    let method = Method::parse(method).ok_or(ParseError::BadMethod)?;
    let version_rest = version
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .map(|_| &version[4..])
        .ok_or(ParseError::BadRequestLine)?;
    check_version(version_rest)?;
    let uri = Uri::parse(uri).ok_or(ParseError::BadRequestUri)?;
    if let Uri::Sip(u) = &uri {
        if u.headers.is_some() {
            return Err(ParseError::HeadersInRequestUri);
        }
    }
    Ok((method, uri))
}

/// Checks the values of the headers the core relies on.
fn validate(headers: &Headers) -> Result<(), ParseError> {
    for h in &headers.0 {
        let ok = match &h.name {
            HeaderName::Via => list_ok(&h.value, Via::is_valid),
            HeaderName::From | HeaderName::To => NameAddr::is_valid(&h.value),
            HeaderName::Contact => h.value == "*" || list_ok(&h.value, NameAddr::is_valid),
            HeaderName::Route | HeaderName::RecordRoute => list_ok(&h.value, NameAddr::is_valid),
            HeaderName::CSeq => CSeq::parse(&h.value).is_some(),
            HeaderName::CallId => !h.value.is_empty() && h.value.bytes().all(|b| text::is_word(b) || b == b'@'),
            HeaderName::MaxForwards => text::parse_u64(&h.value, 255).is_some(),
            HeaderName::ContentType => super::headers::MediaType::parse(&h.value).is_some(),
            _ => true,
        };
        if !ok {
            return Err(ParseError::BadHeader(h.name.clone()));
        }
    }
    Ok(())
}

fn list_ok(value: &str, f: impl Fn(&str) -> bool) -> bool {
    let mut ok = true;
    let balanced = text::each_comma(value, |p| ok = ok && !p.is_empty() && f(p));
    balanced.is_ok() && ok
}
