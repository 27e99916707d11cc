//! Fuzz target: stream framing (src/io/framing.rs). Never panics; a SIP frame is a
//! non-empty prefix of the buffer within the message limit; keep-alives are a
//! non-empty prefix; a CTI line ends at its newline within the limit; an HTTP head
//! lies within the buffer and its body within the request limit.
#![no_main]

use ctibox::io::framing::{http_head, line_frame, sip_frame, Frame};
use ctibox::limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match sip_frame(data) {
        Frame::Message(n) => {
            assert!(n > 0 && n <= data.len(), "Message({n}) outside a buffer of {}", data.len());
            assert!(n <= limits::SIP_MAX_MESSAGE, "Message({n}) over the limit");
        }
        Frame::KeepAlive(n) => assert!(n > 0 && n <= data.len(), "KeepAlive({n}) outside a buffer of {}", data.len()),
        Frame::Incomplete => assert!(data.len() <= limits::SIP_MAX_MESSAGE || data.windows(4).any(|w| w == b"\r\n\r\n")),
        Frame::Broken(_) => {}
    }
    // The first byte chooses the line limit, so short and long limits are both tried.
    let max = usize::from(data.first().copied().unwrap_or(0)) * 16;
    match line_frame(data, max) {
        Frame::Message(n) => {
            assert!(n > 0 && n <= data.len() && n <= max + 1);
            assert_eq!(data[n - 1], b'\n');
            assert!(!data[..n - 1].contains(&b'\n'));
        }
        Frame::Incomplete => assert!(!data.contains(&b'\n') && data.len() <= max),
        Frame::KeepAlive(_) => panic!("line_frame never reports keep-alives"),
        Frame::Broken(_) => {}
    }
    if let Ok(Some(h)) = http_head(data) {
        assert!(h.head_len >= 4 && h.head_len <= data.len());
        assert_eq!(&data[h.head_len - 4..h.head_len], b"\r\n\r\n");
        assert!(h.content_length <= limits::HTTP_MAX_REQUEST);
    }
});
