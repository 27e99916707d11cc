use super::*;

fn settings(unit: u64) -> Settings {
    Settings { heartbeat: Duration::from_millis(50), dead_after: Duration::from_millis(150), priority: 100, unit }
}

fn outputs(p: &mut Pair) -> Vec<Output> {
    std::iter::from_fn(|| p.poll_output()).collect()
}

#[test]
fn a_lone_unit_takes_over_only_after_dead_after_and_a_witness_that_answers() {
    let mut p = Pair::new(settings(1), Time::ZERO, 4);
    assert!(matches!(outputs(&mut p)[..], [Output::Send(Status { role: Role::Starting, term: 4, .. })]));
    assert_eq!(p.poll_timeout(), Time::from_millis(50));
    p.handle_timeout(Time::from_millis(50));
    p.handle_timeout(Time::from_millis(100));
    assert!(!outputs(&mut p).contains(&Output::Probe), "no probe before dead_after");
    assert_eq!(p.poll_timeout(), Time::from_millis(150));
    p.handle_timeout(Time::from_millis(150));
    assert!(outputs(&mut p).contains(&Output::Probe));
    // No witness: it stays out of service, and asks again a heartbeat later.
    p.probed(Time::from_millis(152), false, None);
    assert_eq!(p.role(), Role::Starting);
    p.handle_timeout(p.poll_timeout());
    assert!(outputs(&mut p).contains(&Output::Probe));
    p.probed(Time::from_millis(204), true, None);
    assert_eq!((p.role(), p.term()), (Role::Active, 5), "unit 1 takes the next odd term");
    assert!(outputs(&mut p).contains(&Output::Role { role: Role::Active, term: 5 }));
}

#[test]
fn an_active_hearing_a_higher_term_active_steps_down_at_once_and_a_lower_one_is_ignored() {
    let mut p = Pair::new(settings(0), Time::ZERO, 0);
    p.handle_timeout(Time::from_millis(150));
    p.probed(Time::from_millis(151), true, None);
    assert_eq!((p.role(), p.term()), (Role::Active, 2));
    let other = |term| Status { term, role: Role::Active, priority: 200, unit: 1, handover: false };
    p.handle_frame(Time::from_millis(160), other(1));
    assert_eq!(p.role(), Role::Active);
    p.handle_frame(Time::from_millis(170), other(3));
    assert_eq!(p.role(), Role::SteppingDown);
    p.handle_timeout(Time::from_millis(320));
    assert_eq!(p.role(), Role::Standby);
}

#[test]
fn a_frame_from_itself_is_not_taken_for_the_peer() {
    let mut p = Pair::new(settings(0), Time::ZERO, 0);
    let me = p.status();
    p.handle_frame(Time::from_millis(10), me);
    assert!(p.peer().is_none());
}

#[test]
fn a_closed_peer_port_lets_a_standby_probe_at_once_but_only_the_probe_decides() {
    let mut p = Pair::new(settings(0), Time::ZERO, 0);
    let active = |_at: u64| Status { term: 3, role: Role::Active, priority: 100, unit: 1, handover: false };
    p.handle_frame(Time::from_millis(10), active(10));
    assert_eq!(p.role(), Role::Standby);
    outputs(&mut p);
    // The peer's port answers "unreachable" 40 ms after its last heartbeat.
    p.peer_gone(Time::from_millis(50));
    assert!(outputs(&mut p).contains(&Output::Probe), "probes at once, not after dead_after");
    // The peer answers over the LAN (the ICMP error was forged or stale): no takeover.
    p.probed(Time::from_millis(52), true, Some(active(52)));
    assert_eq!(p.role(), Role::Standby);
    // Gone again, and this time nobody answers but the witness: it takes over at 60 ms,
    // long before dead_after (150 ms) of silence.
    p.peer_gone(Time::from_millis(60));
    let mut t = Time::from_millis(60);
    while !outputs(&mut p).contains(&Output::Probe) {
        t = p.poll_timeout();
        assert!(t < Time::from_millis(150), "no probe before dead_after");
        p.handle_timeout(t);
    }
    p.probed(t + Duration::from_millis(2), true, None);
    assert_eq!(p.role(), Role::Active);
}
