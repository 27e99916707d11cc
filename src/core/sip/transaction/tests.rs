//! Transaction tests on a virtual clock: exact retransmission schedules, timeouts,
//! absorption of retransmits, ACK and CANCEL matching, TCP variants, capacity.

use super::*;
use crate::core::sip::msg::{Message, SipHeaders};
use crate::core::sip::{parse_message, Method};
use crate::core::{ConnId, Time, Transport};

const UA: &str = "192.0.2.10:5060";

fn udp(addr: &str) -> Peer {
    Peer { transport: Transport::Udp, conn: None, addr: addr.parse().unwrap() }
}
fn tcp(addr: &str) -> Peer {
    Peer { transport: Transport::Tcp, conn: Some(ConnId(7)), addr: addr.parse().unwrap() }
}

fn request(method: &str, branch: &str, extra_via: &str) -> Request {
    let text = format!(
        "{method} sip:bob@192.0.2.20 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060{branch}{extra_via}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c1@192.0.2.10\r\n\
CSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n"
    );
    match parse_message(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        _ => unreachable!(),
    }
}
fn invite(branch: &str) -> Request {
    request("INVITE", &format!(";branch={branch}"), "")
}

fn response(req: &Request, status: u16, tag: Option<&str>) -> Response {
    Response::to_request(req, status, tag)
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(SipTimers::default(), 16)
}

fn drain_transmits(l: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| l.poll_transmit()).collect()
}
fn drain_events(l: &mut TransactionLayer) -> Vec<TxEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

/// Steps the virtual clock through every deadline up to `until` ms, returning the
/// times (ms) at which something was transmitted.
fn run_until(l: &mut TransactionLayer, until: u64) -> Vec<u64> {
    let mut sent = Vec::new();
    while let Some(t) = l.poll_timeout() {
        if t > Time::from_millis(until) {
            break;
        }
        l.handle_timeout(t);
        for _ in drain_transmits(l) {
            sent.push(t.as_millis());
        }
    }
    sent
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b).lines().next().unwrap_or("").to_string()
}

#[test]
fn timer_defaults_follow_rfc() {
    let t = SipTimers::default();
    assert_eq!((t.t1.as_millis(), t.t2.as_millis(), t.t4.as_millis()), (500, 4000, 5000));
    assert_eq!(t.timeout().as_millis(), 32_000);
}

#[test]
fn invite_client_timer_a_doubles_then_timer_b_times_out() {
    let mut l = layer();
    let tx = l.send_request(Time::ZERO, udp(UA), invite("z9hG4bKa")).unwrap();
    assert_eq!(drain_transmits(&mut l).len(), 1);
    // Timer A: 500, 1000, 2000, 4000, 8000, 16000 ms intervals (no T2 cap for INVITE).
    assert_eq!(run_until(&mut l, 31_999), vec![500, 1500, 3500, 7500, 15_500, 31_500]);
    assert!(drain_events(&mut l).is_empty());
    run_until(&mut l, 32_000);
    assert_eq!(drain_events(&mut l), vec![TxEvent::Timeout { tx, timer: TimerKind::B }, TxEvent::Terminated { tx }]);
    assert!(l.is_empty() && l.poll_timeout().is_none());
}

#[test]
fn non_invite_client_timer_e_caps_at_t2_then_timer_f() {
    let mut l = layer();
    let tx = l.send_request(Time::ZERO, udp(UA), request("OPTIONS", ";branch=z9hG4bKo", "")).unwrap();
    let _ = drain_transmits(&mut l);
    // Intervals 500, 1000, 2000, 4000, 4000, ... (Timer E capped at T2).
    let sent = run_until(&mut l, 31_999);
    assert_eq!(sent, vec![500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]);
    let gaps: Vec<u64> = std::iter::once(sent[0]).chain(sent.windows(2).map(|w| w[1] - w[0])).collect();
    assert_eq!(&gaps[..6], &[500, 1000, 2000, 4000, 4000, 4000]);
    run_until(&mut l, 32_000);
    assert_eq!(drain_events(&mut l)[0], TxEvent::Timeout { tx, timer: TimerKind::F });
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2() {
    let mut l = layer();
    let req = request("REGISTER", ";branch=z9hG4bKr", "");
    let tx = l.send_request(Time::ZERO, udp(UA), req.clone()).unwrap();
    let _ = drain_transmits(&mut l);
    assert_eq!(run_until(&mut l, 600), vec![500]);
    l.handle_response(Time::from_millis(600), response(&req, 100, None));
    assert!(matches!(drain_events(&mut l)[..], [TxEvent::Response { tx: t, .. }] if t == tx));
    // E was armed for 1500 (interval 1000); in Proceeding it re-arms at T2.
    assert_eq!(run_until(&mut l, 10_000), vec![1500, 5500, 9500]);
    l.handle_response(Time::from_millis(10_000), response(&req, 200, Some("b")));
    assert_eq!(l.get(tx).unwrap().state, State::Completed);
    // A retransmitted 200 is absorbed.
    l.handle_response(Time::from_millis(10_100), response(&req, 200, Some("b")));
    assert_eq!(drain_events(&mut l).len(), 1);
    // Timer K = T4.
    run_until(&mut l, 14_999);
    assert!(l.get(tx).is_some());
    run_until(&mut l, 15_000);
    assert!(l.get(tx).is_none());
}

#[test]
fn tcp_client_never_retransmits_and_k_is_zero() {
    let mut l = layer();
    let req = request("OPTIONS", ";branch=z9hG4bKt", "");
    let tx = l.send_request(Time::ZERO, tcp(UA), req.clone()).unwrap();
    assert_eq!(drain_transmits(&mut l).len(), 1);
    assert_eq!(l.poll_timeout(), Some(Time::from_millis(32_000)), "only Timer F is armed");
    l.handle_response(Time::from_millis(100), response(&req, 200, Some("b")));
    assert_eq!(drain_events(&mut l).last(), Some(&TxEvent::Terminated { tx }));
    assert!(l.is_empty() && l.poll_timeout().is_none());

    let tx = l.send_request(Time::ZERO, tcp(UA), invite("z9hG4bKti")).unwrap();
    let _ = drain_transmits(&mut l);
    assert!(run_until(&mut l, 31_999).is_empty());
    run_until(&mut l, 32_000);
    assert_eq!(drain_events(&mut l)[0], TxEvent::Timeout { tx, timer: TimerKind::B });
}

#[test]
fn invite_client_non_2xx_gets_ack_and_absorbs_retransmits() {
    let mut l = layer();
    let inv = invite("z9hG4bKn");
    let tx = l.send_request(Time::ZERO, udp(UA), inv.clone()).unwrap();
    let _ = drain_transmits(&mut l);
    l.handle_response(Time::from_millis(100), response(&inv, 180, Some("b")));
    assert_eq!(l.get(tx).unwrap().state, State::Proceeding);
    assert!(run_until(&mut l, 20_000).is_empty(), "A stops in Proceeding");
    l.handle_response(Time::from_millis(20_000), response(&inv, 486, Some("b")));
    let ack = drain_transmits(&mut l);
    assert_eq!(ack.len(), 1);
    let Message::Request(ack) = parse_message(&ack[0].bytes).unwrap() else { panic!() };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKn"));
    assert_eq!(ack.cseq().unwrap().to_string(), "1 ACK");
    assert_eq!(ack.to().unwrap().tag(), Some("b"));
    assert_eq!(drain_events(&mut l).len(), 2, "180 and 486 reach the TU");
    // Retransmitted 486: ACK again, TU not told.
    l.handle_response(Time::from_millis(20_500), response(&inv, 486, Some("b")));
    assert_eq!(first_line(&drain_transmits(&mut l)[0].bytes), "ACK sip:bob@192.0.2.20 SIP/2.0");
    assert!(drain_events(&mut l).is_empty());
    // Timer D: 32 s.
    run_until(&mut l, 51_999);
    assert!(l.get(tx).is_some());
    run_until(&mut l, 52_000);
    assert_eq!(drain_events(&mut l), vec![TxEvent::Terminated { tx }]);
}

#[test]
fn invite_client_2xx_accepted_passes_retransmits_then_timer_m() {
    let mut l = layer();
    let inv = invite("z9hG4bK2");
    let tx = l.send_request(Time::ZERO, udp(UA), inv.clone()).unwrap();
    let _ = drain_transmits(&mut l);
    l.handle_response(Time::from_millis(100), response(&inv, 200, Some("b")));
    assert_eq!(l.get(tx).unwrap().state, State::Accepted);
    assert!(drain_transmits(&mut l).is_empty(), "the TU ACKs a 2xx");
    l.handle_response(Time::from_millis(600), response(&inv, 200, Some("b")));
    assert_eq!(drain_events(&mut l).len(), 2);
    run_until(&mut l, 32_100);
    assert_eq!(drain_events(&mut l), vec![TxEvent::Terminated { tx }]);
}

#[test]
fn invite_server_absorbs_retransmits_and_retransmits_final_on_g() {
    let mut l = layer();
    let inv = invite("z9hG4bKs");
    l.handle_request(Time::ZERO, udp(UA), inv.clone()).unwrap();
    let Some(TxEvent::Request { tx: Some(tx), request: req, .. }) = l.poll_event() else { panic!() };
    assert_eq!(first_line(&drain_transmits(&mut l)[0].bytes), "SIP/2.0 100 Trying");
    // Retransmitted INVITE: the 100 is resent, the TU hears nothing.
    l.handle_request(Time::from_millis(500), udp(UA), inv.clone()).unwrap();
    assert_eq!(first_line(&drain_transmits(&mut l)[0].bytes), "SIP/2.0 100 Trying");
    assert!(l.poll_event().is_none());
    l.send_response(Time::from_millis(1000), tx, response(&req, 180, Some("s"))).unwrap();
    l.handle_request(Time::from_millis(1100), udp(UA), inv.clone()).unwrap();
    let sent = drain_transmits(&mut l);
    assert_eq!(first_line(&sent[1].bytes), "SIP/2.0 180 Ringing");
    l.send_response(Time::from_millis(2000), tx, response(&req, 486, Some("s"))).unwrap();
    let _ = drain_transmits(&mut l);
    // Timer G: 500, 1000, 2000, 4000, 4000 ... after the 486 at 2000 ms.
    let sent = run_until(&mut l, 20_000);
    assert_eq!(sent, vec![2500, 3500, 5500, 9500, 13_500, 17_500]);
    // INVITE retransmission in Completed: the final is resent.
    l.handle_request(Time::from_millis(20_000), udp(UA), inv.clone()).unwrap();
    assert_eq!(first_line(&drain_transmits(&mut l)[0].bytes), "SIP/2.0 486 Busy Here");
    // ACK (same branch) is absorbed: Confirmed, no TU event, G stops.
    let mut ack = request("ACK", ";branch=z9hG4bKs", "");
    ack.headers.set(crate::core::sip::HeaderName::To, "<sip:bob@example.com>;tag=s");
    l.handle_request(Time::from_millis(20_100), udp(UA), ack.clone()).unwrap();
    assert_eq!(l.get(tx).unwrap().state, State::Confirmed);
    assert!(l.poll_event().is_none());
    l.handle_request(Time::from_millis(20_200), udp(UA), ack).unwrap();
    assert!(l.poll_event().is_none() && drain_transmits(&mut l).is_empty());
    // Timer I = T4.
    assert!(run_until(&mut l, 25_099).is_empty());
    run_until(&mut l, 25_100);
    assert_eq!(drain_events(&mut l), vec![TxEvent::Terminated { tx }]);
}

#[test]
fn invite_server_timer_h_without_ack() {
    let mut l = layer();
    let inv = invite("z9hG4bKh");
    l.handle_request(Time::ZERO, udp(UA), inv.clone()).unwrap();
    let Some(TxEvent::Request { tx: Some(tx), .. }) = l.poll_event() else { panic!() };
    l.send_response(Time::ZERO, tx, response(&inv, 404, Some("s"))).unwrap();
    run_until(&mut l, 32_000);
    assert_eq!(drain_events(&mut l), vec![TxEvent::Timeout { tx, timer: TimerKind::H }, TxEvent::Terminated { tx }]);
}

#[test]
fn invite_server_2xx_accepted_absorbs_invite_and_tcp_has_no_g() {
    let mut l = layer();
    let inv = invite("z9hG4bKa2");
    l.handle_request(Time::ZERO, tcp(UA), inv.clone()).unwrap();
    let Some(TxEvent::Request { tx: Some(tx), .. }) = l.poll_event() else { panic!() };
    let _ = drain_transmits(&mut l);
    l.send_response(Time::ZERO, tx, response(&inv, 200, Some("s"))).unwrap();
    assert_eq!(l.get(tx).unwrap().state, State::Accepted);
    let _ = drain_transmits(&mut l);
    l.handle_request(Time::from_millis(100), tcp(UA), inv.clone()).unwrap();
    assert!(drain_transmits(&mut l).is_empty() && l.poll_event().is_none());
    // The TU retransmits its 2xx through the transaction.
    l.send_response(Time::from_millis(500), tx, response(&inv, 200, Some("s"))).unwrap();
    assert_eq!(drain_transmits(&mut l).len(), 1);
    run_until(&mut l, 32_000);
    assert_eq!(drain_events(&mut l), vec![TxEvent::Terminated { tx }]);

    // TCP non-2xx: no G, H only; the ACK ends it at once (I = 0).
    let inv = invite("z9hG4bKtcp");
    l.handle_request(Time::ZERO, tcp(UA), inv.clone()).unwrap();
    let Some(TxEvent::Request { tx: Some(tx), .. }) = l.poll_event() else { panic!() };
    l.send_response(Time::ZERO, tx, response(&inv, 603, Some("s"))).unwrap();
    let _ = drain_transmits(&mut l);
    assert_eq!(l.poll_timeout(), Some(Time::from_millis(32_000)));
    l.handle_request(Time::from_millis(10), tcp(UA), request("ACK", ";branch=z9hG4bKtcp", "")).unwrap();
    assert_eq!(drain_events(&mut l), vec![TxEvent::Terminated { tx }]);
}

#[test]
fn non_invite_server_absorbs_and_answers_retransmits_then_j() {
    let mut l = layer();
    let reg = request("REGISTER", ";branch=z9hG4bKreg", "");
    l.handle_request(Time::ZERO, udp(UA), reg.clone()).unwrap();
    let Some(TxEvent::Request { tx: Some(tx), .. }) = l.poll_event() else { panic!() };
    assert!(drain_transmits(&mut l).is_empty(), "no automatic 100 for non-INVITE");
    l.handle_request(Time::from_millis(500), udp(UA), reg.clone()).unwrap();
    assert!(drain_transmits(&mut l).is_empty() && l.poll_event().is_none(), "Trying absorbs silently");
    l.send_response(Time::from_millis(600), tx, response(&reg, 200, Some("s"))).unwrap();
    let _ = drain_transmits(&mut l);
    l.handle_request(Time::from_millis(1500), udp(UA), reg.clone()).unwrap();
    assert_eq!(first_line(&drain_transmits(&mut l)[0].bytes), "SIP/2.0 200 OK");
    assert!(l.poll_event().is_none());
    assert_eq!(l.send_response(Time::from_millis(1600), tx, response(&reg, 500, None)), Err(TxError::WrongState));
    run_until(&mut l, 32_599);
    assert!(l.get(tx).is_some());
    run_until(&mut l, 32_600);
    assert!(l.get(tx).is_none());
    assert_eq!(drain_events(&mut l), vec![TxEvent::Terminated { tx }]);
    // Over TCP, J is zero.
    l.handle_request(Time::ZERO, tcp(UA), request("BYE", ";branch=z9hG4bKbye", "")).unwrap();
    let Some(TxEvent::Request { tx: Some(tx), request: bye, .. }) = l.poll_event() else { panic!() };
    l.send_response(Time::ZERO, tx, response(&bye, 200, Some("s"))).unwrap();
    assert!(l.get(tx).is_none());
}

#[test]
fn cancel_matches_the_invite_server_transaction() {
    let mut l = layer();
    let inv = invite("z9hG4bKc");
    l.handle_request(Time::ZERO, udp(UA), inv.clone()).unwrap();
    let Some(TxEvent::Request { tx: Some(itx), .. }) = l.poll_event() else { panic!() };
    l.handle_request(Time::from_millis(10), udp(UA), request("CANCEL", ";branch=z9hG4bKc", "")).unwrap();
    let Some(TxEvent::Request { tx: Some(ctx), cancels, request: c, .. }) = l.poll_event() else { panic!() };
    assert_eq!(cancels, Some(itx));
    assert_ne!(ctx, itx);
    assert_eq!(c.method, Method::Cancel);
    // A CANCEL for another branch matches nothing (the TU answers 481).
    l.handle_request(Time::from_millis(20), udp(UA), request_other_cancel()).unwrap();
    let Some(TxEvent::Request { cancels: None, .. }) = l.poll_event() else { panic!() };
}

fn request_other_cancel() -> Request {
    request("CANCEL", ";branch=z9hG4bKother", "")
}

#[test]
fn client_cancel_waits_for_provisional() {
    let mut l = layer();
    let inv = invite("z9hG4bKcc");
    let tx = l.send_request(Time::ZERO, udp(UA), inv.clone()).unwrap();
    let _ = drain_transmits(&mut l);
    assert_eq!(l.cancel(Time::from_millis(10), tx), Ok(None));
    assert!(drain_transmits(&mut l).is_empty());
    l.handle_response(Time::from_millis(100), response(&inv, 180, Some("b")));
    let sent = drain_transmits(&mut l);
    let Message::Request(c) = parse_message(&sent[0].bytes).unwrap() else { panic!() };
    assert_eq!((c.method.clone(), c.cseq().unwrap().to_string()), (Method::Cancel, "1 CANCEL".to_string()));
    assert_eq!(c.top_via().unwrap().branch(), Some("z9hG4bKcc"));
    assert_eq!(c.to().unwrap().tag(), None);
    assert_eq!(l.len(), 2);
    // In Proceeding a second cancel goes out at once with its own id... but the
    // branch is already in use by the first CANCEL.
    assert!(l.cancel(Time::from_millis(200), tx).is_err());
}

#[test]
fn capacity_is_bounded() {
    let mut l = TransactionLayer::new(SipTimers::default(), 2);
    l.handle_request(Time::ZERO, udp(UA), invite("z9hG4bK1")).unwrap();
    l.handle_request(Time::ZERO, udp(UA), invite("z9hG4bK2")).unwrap();
    assert_eq!(l.handle_request(Time::ZERO, udp(UA), invite("z9hG4bK3")), Err(TxError::Capacity));
    assert_eq!(l.send_request(Time::ZERO, udp(UA), invite("z9hG4bK4")), Err(TxError::Capacity));
    // Retransmissions and ACKs still work at capacity.
    assert_eq!(l.handle_request(Time::ZERO, udp(UA), invite("z9hG4bK1")), Ok(()));
    assert_eq!(l.stats().refused_capacity, 2);
}

#[test]
fn rport_and_received_route_the_response() {
    let mut l = layer();
    let inv = request("INVITE", ";branch=z9hG4bKnat", ";rport");
    l.handle_request(Time::ZERO, udp("198.51.100.7:40000"), inv).unwrap();
    let Some(TxEvent::Request { request, .. }) = l.poll_event() else { panic!() };
    let via = request.top_via().unwrap();
    assert_eq!(via.received(), Some("198.51.100.7"));
    assert_eq!(via.rport(), Some(Some(40000)));
    let trying = drain_transmits(&mut l);
    assert_eq!(trying[0].peer.addr, "198.51.100.7:40000".parse().unwrap());
    let Message::Response(r) = parse_message(&trying[0].bytes).unwrap() else { panic!() };
    assert_eq!(r.top_via().unwrap().rport(), Some(Some(40000)));

    // Without rport: source IP, sent-by port.
    l.handle_request(Time::ZERO, udp("198.51.100.7:40001"), invite("z9hG4bKnat2")).unwrap();
    assert_eq!(drain_transmits(&mut l)[0].peer.addr, "198.51.100.7:5060".parse().unwrap());
}

#[test]
fn rfc2543_requests_without_cookie_still_match() {
    let mut l = layer();
    let inv = request("INVITE", "", "");
    l.handle_request(Time::ZERO, udp(UA), inv.clone()).unwrap();
    let Some(TxEvent::Request { tx: Some(tx), .. }) = l.poll_event() else { panic!() };
    l.handle_request(Time::from_millis(500), udp(UA), inv.clone()).unwrap();
    assert!(l.poll_event().is_none(), "retransmission absorbed");
    l.send_response(Time::from_millis(600), tx, response(&inv, 404, Some("s"))).unwrap();
    let mut ack = request("ACK", "", "");
    ack.headers.set(crate::core::sip::HeaderName::To, "<sip:bob@example.com>;tag=s");
    l.handle_request(Time::from_millis(700), udp(UA), ack).unwrap();
    assert_eq!(l.get(tx).unwrap().state, State::Confirmed);
    // badbranch.dat: the bare cookie is no RFC 3261 branch either.
    let bare = request("OPTIONS", ";branch=z9hG4bK", "");
    l.handle_request(Time::ZERO, udp(UA), bare.clone()).unwrap();
    let _ = drain_events(&mut l);
    l.handle_request(Time::ZERO, udp(UA), bare).unwrap();
    assert!(l.poll_event().is_none());
}

#[test]
fn stray_ack_and_responses() {
    let mut l = layer();
    l.handle_request(Time::ZERO, udp(UA), request("ACK", ";branch=z9hG4bK2xxack", "")).unwrap();
    assert!(matches!(l.poll_event(), Some(TxEvent::Request { tx: None, .. })));
    l.handle_response(Time::ZERO, response(&invite("z9hG4bKnone"), 200, Some("x")));
    assert_eq!(l.stats().stray_responses, 1);
    assert!(l.is_empty());
}

#[test]
fn transport_error_reaches_the_tu() {
    let mut l = layer();
    let tx = l.send_request(Time::ZERO, tcp(UA), invite("z9hG4bKte")).unwrap();
    l.handle_transport_error(Time::from_millis(1), tx);
    assert_eq!(drain_events(&mut l), vec![TxEvent::TransportError { tx }, TxEvent::Terminated { tx }]);
    assert!(l.poll_timeout().is_none());
}

#[test]
fn client_requires_branch_and_refuses_ack() {
    let mut l = layer();
    assert_eq!(l.send_request(Time::ZERO, udp(UA), request("OPTIONS", "", "")), Err(TxError::Malformed("branch")));
    assert_eq!(l.send_request(Time::ZERO, udp(UA), request("ACK", ";branch=z9hG4bKx", "")), Err(TxError::WrongState));
}

/// Two layers on one virtual clock over a lossy UDP link: the `drop` pattern says
/// which datagrams (by send order) are lost. The server TU answers every new request
/// with `status` at once; returns the events each TU saw.
fn lossy_exchange(method: &str, status: u16, drop: &[usize]) -> (Vec<TxEvent>, Vec<TxEvent>, u64) {
    let (mut c, mut s) = (layer(), layer());
    let (c_addr, s_addr) = ("192.0.2.10:5060", "192.0.2.20:5060");
    let req = request(method, ";branch=z9hG4bKlossy", "");
    c.send_request(Time::ZERO, udp(s_addr), req).unwrap();
    let (mut c_events, mut s_events, mut sent, mut now) = (Vec::new(), Vec::new(), 0usize, Time::ZERO);
    for _ in 0..1000 {
        let mut moved = false;
        while let Some(t) = c.poll_transmit() {
            moved = true;
            sent += 1;
            if !drop.contains(&sent) {
                match parse_message(&t.bytes).unwrap() {
                    Message::Request(r) => s.handle_request(now, udp(c_addr), r).unwrap(),
                    Message::Response(r) => c.handle_response(now, r),
                }
            }
        }
        while let Some(t) = s.poll_transmit() {
            moved = true;
            sent += 1;
            if !drop.contains(&sent) {
                let Message::Response(r) = parse_message(&t.bytes).unwrap() else { panic!() };
                c.handle_response(now, r);
            }
        }
        while let Some(e) = s.poll_event() {
            moved = true;
            if let TxEvent::Request { tx: Some(tx), request, .. } = &e {
                s.send_response(now, *tx, response(request, status, Some("srv"))).unwrap();
            }
            s_events.push(e);
        }
        while let Some(e) = c.poll_event() {
            moved = true;
            c_events.push(e);
        }
        if moved {
            continue;
        }
        let next = [c.poll_timeout(), s.poll_timeout()].into_iter().flatten().min();
        let Some(next) = next else { break };
        now = next;
        c.handle_timeout(now);
        s.handle_timeout(now);
    }
    assert!(c.is_empty() && s.is_empty(), "both sides clean up");
    (c_events, s_events, now.as_millis())
}

fn statuses(events: &[TxEvent]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|e| if let TxEvent::Response { response, .. } = e { Some(response.status) } else { None })
        .collect()
}

#[test]
fn lossy_link_non_invite_delivers_once() {
    // Lost: the request, its first retransmission, and the first 200.
    let (c, s, _) = lossy_exchange("OPTIONS", 200, &[1, 2, 4]);
    assert_eq!(statuses(&c), vec![200]);
    assert_eq!(s.iter().filter(|e| matches!(e, TxEvent::Request { .. })).count(), 1);
}

#[test]
fn lossy_link_invite_rejection_is_acked_once_delivered() {
    // Lost: the INVITE, then the 486 and its first Timer G retransmission.
    let (c, s, _) = lossy_exchange("INVITE", 486, &[1, 4, 5]);
    assert_eq!(statuses(&c), vec![100, 486]);
    assert!(!s.iter().any(|e| matches!(e, TxEvent::Timeout { .. })), "the server saw an ACK in time");
}

#[test]
fn dead_link_times_out_with_timer_b() {
    let (c, s, end) = lossy_exchange("INVITE", 200, &(1..100).collect::<Vec<_>>());
    assert!(matches!(c[0], TxEvent::Timeout { timer: TimerKind::B, .. }));
    assert!(s.is_empty());
    assert_eq!(end, 32_000);
}
