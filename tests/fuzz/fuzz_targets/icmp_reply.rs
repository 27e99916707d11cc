//! Fuzz target: ICMP echo reply checks (src/codec/icmp.rs). The first four bytes are
//! the identifier and sequence number looked for, the rest the packet. No checker
//! panics on any input, and a reply accepted with its IPv4 header or identifier is
//! accepted without them too.
#![no_main]

use ctibox::codec::icmp::{is_echo_reply_dgram_v4, is_echo_reply_dgram_v6, is_echo_reply_v4, is_echo_reply_v6};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((ids, packet)) = data.split_first_chunk::<4>() else { return };
    let id = u16::from_be_bytes([ids[0], ids[1]]);
    let seq = u16::from_be_bytes([ids[2], ids[3]]);
    if is_echo_reply_v4(packet, id, seq) {
        let header_len = usize::from(packet[0] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        assert!(is_echo_reply_dgram_v4(&packet[header_len..total_len], seq), "raw reply refused as datagram");
    }
    if is_echo_reply_v6(packet, id, seq) {
        assert!(is_echo_reply_dgram_v6(packet, seq), "raw reply refused as datagram");
    }
    let _ = is_echo_reply_dgram_v4(packet, seq);
    let _ = is_echo_reply_dgram_v6(packet, seq);
});
