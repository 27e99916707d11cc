//! `Message` to bytes, and the builders the B2BUA uses: a response to a request
//! (copying Via, From, To, Call-ID, CSeq per RFC 3261 §8.2.6.2, adding a To tag) and
//! a new request. Printing writes headers in the stored order with canonical names;
//! builders keep Content-Length equal to the body.

use super::msg::{Header, Headers, Message, Request, Response};
use super::name::{HeaderName, Method};
use super::uri::Uri;
use std::fmt::Write as _;

/// The standard reason phrase for a status code ("" when unknown).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "",
    }
}

fn write_headers(out: &mut Vec<u8>, headers: &Headers) {
    for Header { name, value } in &headers.0 {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Start line, headers and body in one buffer sized for all of them (no regrowth).
fn wire(start: std::fmt::Arguments<'_>, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let head: usize = headers.0.iter().map(|h| h.name.as_str().len() + h.value.len() + 4).sum();
    let mut b = Vec::with_capacity(START_LINE_ROOM + head + 2 + body.len());
    let _ = std::io::Write::write_fmt(&mut b, start);
    write_headers(&mut b, headers);
    b.extend_from_slice(body);
    b
}

/// Room reserved for the start line (a longer one only regrows the buffer).
const START_LINE_ROOM: usize = 128;

impl Request {
    /// Wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        wire(format_args!("{} {} SIP/2.0\r\n", self.method, self.uri), &self.headers, &self.body)
    }

    /// A new request with the mandatory headers in the usual order (RFC 3261 §8.1.1).
    /// `via` is the full Via value (with branch), `from`/`to` full name-addr values.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        method: Method,
        uri: Uri,
        via: &str,
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        max_forwards: u8,
    ) -> Request {
        let mut headers = Headers::default();
        headers.push(HeaderName::Via, via);
        headers.push(HeaderName::MaxForwards, max_forwards.to_string());
        headers.push(HeaderName::From, from);
        headers.push(HeaderName::To, to);
        headers.push(HeaderName::CallId, call_id);
        headers.push(HeaderName::CSeq, format!("{cseq} {method}"));
        headers.push(HeaderName::ContentLength, "0");
        Request { method, uri, headers, body: Vec::new() }
    }

    /// Sets the body with its Content-Type and a matching Content-Length.
    pub fn set_body(&mut self, content_type: &str, body: Vec<u8>) {
        set_body(&mut self.headers, &mut self.body, content_type, body);
    }
}

fn set_body(headers: &mut Headers, slot: &mut Vec<u8>, content_type: &str, body: Vec<u8>) {
    headers.remove(&HeaderName::ContentType);
    if !body.is_empty() {
        headers.add(HeaderName::ContentType, content_type);
    }
    headers.set(HeaderName::ContentLength, body.len().to_string());
    *slot = body;
}

impl Response {
    /// Wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        wire(format_args!("SIP/2.0 {} {}\r\n", self.status, self.reason), &self.headers, &self.body)
    }

    /// A response to `req` (RFC 3261 §8.2.6.2): every Via line, From, To, Call-ID and
    /// CSeq copied as received, `to_tag` added to To unless it already has a tag or is
    /// `None` (use `None` for 100 Trying), and `Content-Length: 0`.
    pub fn to_request(req: &Request, status: u16, to_tag: Option<&str>) -> Response {
        let mut headers = Headers::default();
        for h in &req.headers.0 {
            match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => headers.0.push(h.clone()),
                HeaderName::To => {
                    let mut value = h.value.clone();
                    if let Some(tag) = to_tag {
                        let has_tag = super::headers::NameAddr::tag_in(&value).is_some();
                        if !has_tag {
                            let _ = write!(value, ";tag={tag}");
                        }
                    }
                    headers.0.push(Header { name: HeaderName::To, value });
                }
                _ => {}
            }
        }
        headers.push(HeaderName::ContentLength, "0");
        Response { status, reason: reason_phrase(status).to_string(), headers, body: Vec::new() }
    }

    /// Sets the body with its Content-Type and a matching Content-Length.
    pub fn set_body(&mut self, content_type: &str, body: Vec<u8>) {
        set_body(&mut self.headers, &mut self.body, content_type, body);
    }
}

impl Message {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sip::{parse_message, Host, SipUri};

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds ;rport\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
t: Bob <sip:bob@biloxi.example.com>\r\n\
f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
m: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Length: 0\r\n\r\n";

    fn request() -> Request {
        match parse_message(INVITE).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_response_copies_the_requests_dialog_headers_and_adds_a_to_tag_only_when_given() {
        let r = Response::to_request(&request(), 180, Some("a6c85cf"));
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds ;rport\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n"
        );
        let trying = Response::to_request(&request(), 100, None);
        assert_eq!(trying.headers.get(&HeaderName::To), Some("Bob <sip:bob@biloxi.example.com>"));
    }

    #[test]
    fn a_built_request_prints_as_its_golden_bytes_and_parses_back() {
        let uri = Uri::Sip(SipUri::new(Some("bob"), Host::Domain("biloxi.example.com".into()), Some(5062)));
        let mut r = Request::new(
            Method::Invite,
            uri,
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;rport",
            "<sip:alice@atlanta.example.com>;tag=88sja8x",
            "<sip:bob@biloxi.example.com>",
            "f81d4fae@192.0.2.1",
            1,
            70,
        );
        r.set_body("application/sdp", b"v=0\r\n".to_vec());
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            "INVITE sip:bob@biloxi.example.com:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@atlanta.example.com>;tag=88sja8x\r\n\
To: <sip:bob@biloxi.example.com>\r\n\
Call-ID: f81d4fae@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 5\r\n\r\n\
v=0\r\n"
        );
        assert_eq!(parse_message(&r.to_bytes()).unwrap(), Message::Request(r));
    }

    #[test]
    fn typed_values_print_back() {
        let r = request();
        use crate::core::sip::SipHeaders;
        let via = r.top_via().unwrap();
        assert_eq!(via.to_string(), "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport");
        assert_eq!(r.from().unwrap().to_string(), "\"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774");
        assert_eq!(r.cseq().unwrap().to_string(), "314159 INVITE");
    }
}
