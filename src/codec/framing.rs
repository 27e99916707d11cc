//! Stream framing: cuts a TCP byte stream into SIP messages (Content-Length, RFC 3261
//! §18.3), CTI lines, and HTTP requests. Buffers are bounded; a peer that exceeds
//! them gets an error and the connection is closed.

use crate::limits;

/// Outcome of trying to take one message from a stream buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message of this many bytes is at the front of the buffer.
    Message(usize),
    /// Keep-alive CRLFs (RFC 5626 §3.5.1) of this many bytes to skip.
    KeepAlive(usize),
    /// Not enough bytes yet.
    Incomplete,
    /// The stream cannot be framed any more; close it with this reason.
    Broken(&'static str),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Frames one SIP message at the front of `buf`.
pub fn sip_frame(buf: &[u8]) -> Frame {
    let lead = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    if lead > 0 {
        return Frame::KeepAlive(lead);
    }
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > limits::SIP_MAX_MESSAGE { Frame::Broken("header too large") } else { Frame::Incomplete };
    };
    let head = &buf[..head_end];
    let mut length: Option<usize> = None;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = line[colon + 1..].trim_ascii();
            let Some(n) = std::str::from_utf8(value).ok().and_then(|s| s.parse::<usize>().ok()) else {
                return Frame::Broken("bad Content-Length");
            };
            // Refused before any arithmetic: a body can never exceed the message cap.
            if n > limits::SIP_MAX_CONTENT_LENGTH {
                return Frame::Broken("Content-Length over the message limit");
            }
            if length.is_some_and(|l| l != n) {
                return Frame::Broken("conflicting Content-Length");
            }
            length = Some(n);
        }
    }
    // RFC 3261 §18.3: Content-Length is mandatory on streams.
    let Some(length) = length else { return Frame::Broken("missing Content-Length on a stream") };
    let Some(total) = head_end.checked_add(4).and_then(|t| t.checked_add(length)) else {
        return Frame::Broken("message too large");
    };
    if total > limits::SIP_MAX_MESSAGE {
        return Frame::Broken("message too large");
    }
    if buf.len() >= total {
        Frame::Message(total)
    } else {
        Frame::Incomplete
    }
}

/// Frames one newline-terminated line (CTI over TCP); the returned length includes
/// the newline.
pub fn line_frame(buf: &[u8], max: usize) -> Frame {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) if i <= max => Frame::Message(i + 1),
        Some(_) => Frame::Broken("line too long"),
        None if buf.len() > max => Frame::Broken("line too long"),
        None => Frame::Incomplete,
    }
}

/// A request head parsed from an HTTP/1.1 stream.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpHead {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Bytes of head including the blank line.
    pub head_len: usize,
    pub content_length: usize,
}

impl HttpHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Parses an HTTP request head at the front of `buf`: Ok(None) when incomplete.
pub fn http_head(buf: &[u8]) -> Result<Option<HttpHead>, &'static str> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > limits::HTTP_MAX_REQUEST { Err("request head too large") } else { Ok(None) };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let first = lines.next().ok_or("empty request")?;
    let mut parts = first.split(' ');
    let (Some(method), Some(path), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("malformed request line");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("unsupported HTTP version");
    }
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l.split_once(':').ok_or("malformed header line")?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut head = HttpHead { method: method.into(), path: path.into(), headers, head_len: end + 4, content_length: 0 };
    if let Some(cl) = head.header("content-length") {
        head.content_length = cl.parse().map_err(|_| "bad Content-Length")?;
        if head.content_length > limits::HTTP_MAX_REQUEST {
            return Err("request body too large");
        }
    }
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_stream_frames_end_at_content_length_and_missing_or_bad_lengths_break_them() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabcINVITE";
        assert_eq!(sip_frame(m), Frame::Message(m.len() - 6));
        assert_eq!(sip_frame(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 10\r\n\r\nabc"), Frame::Incomplete);
        assert_eq!(sip_frame(b"\r\n\r\nOPTIONS"), Frame::KeepAlive(4));
        assert_eq!(sip_frame(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: -9\r\n\r\n"), Frame::Broken("bad Content-Length"));
        assert_eq!(sip_frame(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n"), Frame::Broken("missing Content-Length on a stream"));
        assert_eq!(
            sip_frame(b"A sip:a SIP/2.0\r\nl: 5\r\nContent-Length: 13\r\n\r\n"),
            Frame::Broken("conflicting Content-Length")
        );
    }

    #[test]
    fn content_lengths_past_the_cap_are_refused_before_any_sum() {
        // 2^64 - 30: the sum with the head's length once wrapped to a zero-length frame.
        assert_eq!(sip_frame(b"A\r\nl: 18446744073709551586\r\n\r\n"), Frame::Broken("Content-Length over the message limit"));
        assert_eq!(sip_frame(b"A\r\nl: 18446744073709551615\r\n\r\n"), Frame::Broken("Content-Length over the message limit"));
        assert_eq!(sip_frame(b"A\r\nl: 18446744073709551616\r\n\r\n"), Frame::Broken("bad Content-Length"));
        assert_eq!(sip_frame(b"A\r\nl: 65536\r\n\r\n"), Frame::Broken("Content-Length over the message limit"));
        // At the cap the body is awaited, and head + body over the cap is refused.
        assert_eq!(sip_frame(b"A\r\nl: 65400\r\n\r\n"), Frame::Incomplete);
        assert_eq!(sip_frame(b"A\r\nl: 65535\r\n\r\n"), Frame::Broken("message too large"));
    }

    #[test]
    fn a_frame_is_never_empty() {
        for m in [&b"A\r\nl: 0\r\n\r\n"[..], b"\r\n", b"\n"] {
            match sip_frame(m) {
                Frame::Message(n) | Frame::KeepAlive(n) => assert!(n > 0 && n <= m.len(), "{m:?}: {n}"),
                other => panic!("{m:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn lines_frame_at_the_newline_and_a_line_past_the_limit_is_broken() {
        assert_eq!(line_frame(b"{}\n{", 10), Frame::Message(3));
        assert_eq!(line_frame(b"{\"a\":", 10), Frame::Incomplete);
        assert_eq!(line_frame(&[b'x'; 20], 10), Frame::Broken("line too long"));
    }

    #[test]
    fn an_http_head_parses_once_complete_and_garbage_is_an_error() {
        let h = http_head(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.method.as_str(), h.path.as_str(), h.header("host")), ("GET", "/status", Some("x")));
        assert_eq!(http_head(b"GET /status HTTP/1.1\r\n").unwrap(), None);
        assert!(http_head(b"GARBAGE\r\n\r\n").is_err());
    }
}
