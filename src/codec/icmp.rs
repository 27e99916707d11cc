//! ICMP echo, gratuitous ARP and unsolicited neighbour advertisement bytes for the
//! peer-pair failover: pure builders and checkers, no IO. The shell
//! (`crate::io::pairnet`) sends and receives them.
//!
//! Echo replies come in three shapes, one checker each: from a raw IPPROTO_ICMP
//! socket (IPv4 header first), from a raw IPPROTO_ICMPV6 socket (no IP header), and
//! from an ICMP datagram socket (no IP header; the kernel chose the identifier).
//! Every checker bounds-checks before it indexes and never panics.

use std::net::{Ipv4Addr, Ipv6Addr};

/// ICMPv4 echo reply (RFC 792).
const ECHO_REPLY_V4: u8 = 0;
/// ICMPv4 echo request.
const ECHO_REQUEST_V4: u8 = 8;
/// ICMPv6 echo request (RFC 4443).
const ECHO_REQUEST_V6: u8 = 128;
/// ICMPv6 echo reply.
const ECHO_REPLY_V6: u8 = 129;
/// ICMPv6 neighbour advertisement (RFC 4861 §4.4).
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Neighbour advertisement flag: override an existing cache entry.
const NA_FLAG_OVERRIDE: u8 = 0x20;
/// Neighbour discovery option: target link-layer address (RFC 4861 §4.6.1).
const OPT_TARGET_LLADDR: u8 = 2;
/// ICMP echo header: type, code, checksum, identifier, sequence number.
const ECHO_HEADER_LEN: usize = 8;
/// The smallest IPv4 header (IHL 5).
const IPV4_MIN_HEADER_LEN: usize = 20;
/// IPv4 protocol number of ICMP.
const IPPROTO_ICMP: u8 = 1;

/// The internet checksum (RFC 1071) of `data`: ones' complement of the ones'
/// complement sum of its 16-bit big-endian words, an odd last byte padded with zero.
/// A message that carries its own correct checksum sums to 0.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Folded after every addition, so `sum` fits 16 bits here.
    !(sum as u16)
}

fn echo(kind: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ECHO_HEADER_LEN + payload.len());
    m.extend_from_slice(&[kind, 0, 0, 0]);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

/// An ICMPv4 echo request (type 8, code 0) with its checksum filled in.
pub fn echo_request_v4(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = echo(ECHO_REQUEST_V4, id, seq, payload);
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An ICMPv6 echo request (type 128, code 0). The checksum is left 0: it covers an
/// IPv6 pseudo-header, and the kernel fills it in on IPPROTO_ICMPV6 sockets.
pub fn echo_request_v6(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    echo(ECHO_REQUEST_V6, id, seq, payload)
}

/// Whether the ICMP message `icmp` is an echo reply of type `kind`, code 0, with
/// sequence `seq` and, when given, identifier `id`.
fn is_echo(icmp: &[u8], kind: u8, id: Option<u16>, seq: u16) -> bool {
    let [t, code, _, _, i0, i1, s0, s1, ..] = *icmp else { return false };
    t == kind && code == 0 && id.is_none_or(|id| [i0, i1] == id.to_be_bytes()) && [s0, s1] == seq.to_be_bytes()
}

/// Whether `packet`, as read from a raw IPPROTO_ICMP socket (IPv4 header first), is
/// an ICMP echo reply with identifier `id` and sequence `seq` and a valid checksum.
/// The ICMP message ends where the header's total length says; a packet shorter than
/// that, or with a bad version, header length or protocol, is refused.
pub fn is_echo_reply_v4(packet: &[u8], id: u16, seq: u16) -> bool {
    let Some(&first) = packet.first() else { return false };
    if first >> 4 != 4 {
        return false;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN || packet.len() < header_len {
        return false;
    }
    // Within the header: packet.len() >= header_len >= 20.
    let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if packet[9] != IPPROTO_ICMP || total_len < header_len || total_len > packet.len() {
        return false;
    }
    let Some(icmp) = packet.get(header_len..total_len) else { return false };
    is_echo(icmp, ECHO_REPLY_V4, Some(id), seq) && checksum(icmp) == 0
}

/// Whether `packet`, as read from an ICMP datagram socket (SOCK_DGRAM, IPPROTO_ICMP:
/// no IP header), is an echo reply with sequence `seq` and a valid checksum. The
/// identifier is not checked: the kernel sets it to the socket's own and delivers
/// only replies that carry it.
pub fn is_echo_reply_dgram_v4(packet: &[u8], seq: u16) -> bool {
    is_echo(packet, ECHO_REPLY_V4, None, seq) && checksum(packet) == 0
}

/// Whether `packet`, as read from a raw IPPROTO_ICMPV6 socket (no IP header), is an
/// ICMPv6 echo reply with identifier `id` and sequence `seq`. The checksum covers a
/// pseudo-header that is not in `packet`; the kernel has verified it on input.
pub fn is_echo_reply_v6(packet: &[u8], id: u16, seq: u16) -> bool {
    is_echo(packet, ECHO_REPLY_V6, Some(id), seq)
}

/// Whether `packet`, as read from an ICMPv6 datagram socket (SOCK_DGRAM,
/// IPPROTO_ICMPV6), is an echo reply with sequence `seq`; the identifier is the
/// kernel's, as for [`is_echo_reply_dgram_v4`].
pub fn is_echo_reply_dgram_v6(packet: &[u8], seq: u16) -> bool {
    is_echo(packet, ECHO_REPLY_V6, None, seq)
}

/// A gratuitous ARP request (RFC 826, RFC 5227 §3) announcing that `ip` is at `mac`:
/// Ethernet hardware, IPv4 protocol, operation 1, sender and target protocol address
/// both `ip`, target hardware address zero. The 28-byte ARP payload, for an
/// AF_PACKET SOCK_DGRAM socket sending to the broadcast address (the kernel adds the
/// Ethernet header).
pub fn garp_v4(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol type: IPv4
    p[4] = 6; // hardware address length
    p[5] = 4; // protocol address length
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // operation: request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    // p[18..24]: target hardware address, zero.
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// An unsolicited ICMPv6 neighbour advertisement (RFC 4861 §4.4, §7.2.6) announcing
/// that `ip` is at `mac`, for ff02::1 with hop limit 255: override flag set, router
/// and solicited flags clear, target `ip`, one target link-layer address option.
/// The checksum is left 0 for the kernel to fill in. 32 bytes.
pub fn unsolicited_na_v6(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&[NEIGHBOR_ADVERTISEMENT, 0, 0, 0]);
    m.extend_from_slice(&[NA_FLAG_OVERRIDE, 0, 0, 0]);
    m.extend_from_slice(&ip.octets());
    m.extend_from_slice(&[OPT_TARGET_LLADDR, 1]); // option length in units of 8 bytes
    m.extend_from_slice(&mac);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (IHL 5, protocol ICMP, total length set) before `icmp`.
    fn ipv4(icmp: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + icmp.len()).unwrap();
        let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 1, 0, 0, 192, 0, 2, 202, 192, 0, 2, 201];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let c = checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(icmp);
        p
    }

    /// The reply a host sends to `request`: type 0, checksum recomputed.
    fn reply_v4(request: &[u8]) -> Vec<u8> {
        let mut r = request.to_vec();
        r[0] = ECHO_REPLY_V4;
        r[2..4].fill(0);
        let c = checksum(&r);
        r[2..4].copy_from_slice(&c.to_be_bytes());
        r
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is !ddf2.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
        assert_eq!(checksum(&[]), 0xffff);
        // An odd byte counts as the high byte of a last word.
        assert_eq!(checksum(&[0x01]), !0x0100);
    }

    #[test]
    fn echo_request_v4_has_known_bytes_and_checksum() {
        let m = echo_request_v4(0x1234, 1, b"abcd");
        // 0800 + 1234 + 0001 + 6162 + 6364 = defb; the checksum is !defb = 2104.
        assert_eq!(m, [8, 0, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd']);
        assert_eq!(checksum(&m), 0);
        // Odd payload: the checksum still verifies.
        assert_eq!(checksum(&echo_request_v4(0xbeef, 0xffff, b"xyz")), 0);
    }

    #[test]
    fn echo_request_v6_leaves_the_checksum_to_the_kernel() {
        assert_eq!(echo_request_v6(0x0102, 0x0304, b"p"), [128, 0, 0, 0, 1, 2, 3, 4, b'p']);
    }

    #[test]
    fn a_matching_v4_reply_is_accepted() {
        let reply = reply_v4(&echo_request_v4(0x1234, 7, b"ctibox witness"));
        let p = ipv4(&reply);
        assert!(is_echo_reply_v4(&p, 0x1234, 7));
        // IP options (IHL 6) are skipped.
        let mut with_opt = ipv4(&reply);
        with_opt[0] = 0x46;
        with_opt.splice(20..20, [1, 1, 1, 0]);
        let total = u16::try_from(with_opt.len()).unwrap();
        with_opt[2..4].copy_from_slice(&total.to_be_bytes());
        assert!(is_echo_reply_v4(&with_opt, 0x1234, 7));
        // Bytes past the total length (link padding) are not part of the message.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0xaa; 6]);
        assert!(is_echo_reply_v4(&padded, 0x1234, 7));
    }

    #[test]
    fn wrong_truncated_or_garbled_v4_replies_are_refused() {
        let reply = reply_v4(&echo_request_v4(0x1234, 7, b"ctibox witness"));
        let p = ipv4(&reply);
        assert!(!is_echo_reply_v4(&p, 0x1235, 7), "other id");
        assert!(!is_echo_reply_v4(&p, 0x1234, 8), "other seq");
        // Our own request looped back is not a reply.
        assert!(!is_echo_reply_v4(&ipv4(&echo_request_v4(0x1234, 7, b"x")), 0x1234, 7));
        for n in 0..p.len() {
            assert!(!is_echo_reply_v4(&p[..n], 0x1234, 7), "truncated to {n}");
        }
        let mut bad_sum = p.clone();
        *bad_sum.last_mut().unwrap() ^= 1;
        assert!(!is_echo_reply_v4(&bad_sum, 0x1234, 7), "bad checksum");
        let mut v6 = p.clone();
        v6[0] = 0x65;
        assert!(!is_echo_reply_v4(&v6, 0x1234, 7), "version 6");
        for ihl in [0u8, 4, 15] {
            let mut q = p.clone();
            q[0] = 0x40 | ihl;
            assert!(!is_echo_reply_v4(&q, 0x1234, 7), "IHL {ihl}");
        }
        let mut udp = p.clone();
        udp[9] = 17;
        assert!(!is_echo_reply_v4(&udp, 0x1234, 7), "protocol UDP");
        for total in [0u16, 19, 27, u16::try_from(p.len() + 1).unwrap(), u16::MAX] {
            let mut q = p.clone();
            q[2..4].copy_from_slice(&total.to_be_bytes());
            assert!(!is_echo_reply_v4(&q, 0x1234, 7), "total length {total}");
        }
        let mut code = reply.clone();
        code[1] = 1;
        code[2..4].fill(0);
        let c = checksum(&code);
        code[2..4].copy_from_slice(&c.to_be_bytes());
        assert!(!is_echo_reply_v4(&ipv4(&code), 0x1234, 7), "code 1");
    }

    #[test]
    fn datagram_v4_replies_match_on_seq_whatever_the_id() {
        let reply = reply_v4(&echo_request_v4(0x0abc, 42, b"w"));
        assert!(is_echo_reply_dgram_v4(&reply, 42));
        assert!(!is_echo_reply_dgram_v4(&reply, 43));
        assert!(!is_echo_reply_dgram_v4(&ipv4(&reply), 42), "an IP header is not expected");
        for n in 0..reply.len() {
            assert!(!is_echo_reply_dgram_v4(&reply[..n], 42), "truncated to {n}");
        }
        let mut bad = reply.clone();
        bad[8] ^= 0x40;
        assert!(!is_echo_reply_dgram_v4(&bad, 42), "bad checksum");
    }

    #[test]
    fn v6_replies_are_checked_without_an_ip_header() {
        let mut reply = echo_request_v6(0x5678, 9, b"w");
        reply[0] = ECHO_REPLY_V6;
        reply[2..4].copy_from_slice(&[0x3c, 0x1d]); // the kernel's; not checked here
        assert!(is_echo_reply_v6(&reply, 0x5678, 9));
        assert!(!is_echo_reply_v6(&reply, 0x5679, 9));
        assert!(!is_echo_reply_v6(&reply, 0x5678, 10));
        assert!(is_echo_reply_dgram_v6(&reply, 9));
        assert!(!is_echo_reply_dgram_v6(&reply, 8));
        assert!(!is_echo_reply_v6(&echo_request_v6(0x5678, 9, b"w"), 0x5678, 9), "a request");
        for n in 0..ECHO_HEADER_LEN {
            assert!(!is_echo_reply_v6(&reply[..n], 0x5678, 9), "truncated to {n}");
            assert!(!is_echo_reply_dgram_v6(&reply[..n], 9), "truncated to {n}");
        }
        // An echo reply with no payload is still a reply.
        assert!(is_echo_reply_v6(&reply[..ECHO_HEADER_LEN], 0x5678, 9));
    }

    #[test]
    fn garp_v4_has_the_arp_request_layout() {
        let mac = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
        let p = garp_v4(mac, Ipv4Addr::new(192, 0, 2, 201));
        #[rustfmt::skip]
        let want: [u8; 28] = [
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 192, 0, 2, 201,
            0, 0, 0, 0, 0, 0, 192, 0, 2, 201,
        ];
        assert_eq!(p, want);
    }

    #[test]
    fn unsolicited_na_v6_has_the_advertisement_layout() {
        let mac = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
        let ip: Ipv6Addr = "2001:db8::201".parse().unwrap();
        let m = unsolicited_na_v6(mac, ip);
        let mut want = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
        want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x01]);
        want.extend_from_slice(&[2, 1, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);
        assert_eq!(m, want);
        assert_eq!(m.len(), 32);
        assert_eq!(m[4] & 0x80, 0, "router flag clear");
        assert_eq!(m[4] & 0x40, 0, "solicited flag clear");
    }
}
