//! Fuzz target: RFC 4733 payloads (src/core/media/telephone_event.rs). Never panics;
//! a payload that decodes re-encodes to its first block (the reserved bit cleared);
//! an event encoded from any fields decodes to the same fields (volume in 6 bits);
//! the receiver fed events from the bytes reports no more than one start and one end
//! per event, within its queue bound.
#![no_main]

use ctibox::core::media::telephone_event::{EventReceiver, ReceivedEvent, TelephoneEvent, EVENT_QUEUE};
use ctibox::core::Time;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = TelephoneEvent::decode(data) {
        let want = [data[0], data[1] & 0xBF, data[2], data[3]];
        assert_eq!(ev.encode(), want);
        assert_eq!(TelephoneEvent::decode(&want), Ok(ev));
    }
    if data.len() >= 4 {
        let ev = TelephoneEvent { event: data[0], end: data[1] & 1 != 0, volume: data[1] >> 2, duration: u16::from_be_bytes([data[2], data[3]]) };
        assert_eq!(TelephoneEvent::decode(&ev.encode()), Ok(TelephoneEvent { volume: ev.volume & 0x3F, ..ev }));
    }
    // Records of 8 bytes: time step (ms), marker, timestamp (2 bytes), event block.
    let mut rx = EventReceiver::new();
    let mut now = Time::ZERO;
    let mut starts = 0usize;
    let mut ends = 0usize;
    for r in data.chunks_exact(8) {
        now = now + std::time::Duration::from_millis(u64::from(r[0]));
        if let Some(t) = rx.poll_timeout() {
            if t <= now {
                rx.handle_timeout(now);
            }
        }
        let ev = TelephoneEvent::decode(&r[4..8]).expect("4 bytes decode");
        rx.handle_packet(now, r[1] & 1 != 0, u32::from(u16::from_be_bytes([r[2], r[3]])), &ev);
        let mut n = 0;
        while let Some(e) = rx.poll_event() {
            n += 1;
            match e {
                ReceivedEvent::Start { .. } => starts += 1,
                ReceivedEvent::End { .. } => ends += 1,
            }
        }
        assert!(n <= EVENT_QUEUE);
        assert!(ends <= starts, "an end without a start");
        assert!(starts <= ends + 1, "two events open at once");
    }
});
