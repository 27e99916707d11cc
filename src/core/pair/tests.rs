use super::*;

fn settings(unit: u64) -> Settings {
    Settings { heartbeat: Duration::from_millis(50), dead_after: Duration::from_millis(150), priority: 100, unit }
}

fn outputs(p: &mut Pair) -> Vec<Output> {
    std::iter::from_fn(|| p.poll_output()).collect()
}

fn probe_until(out: &[Output]) -> Option<Time> {
    out.iter().find_map(|o| match o {
        Output::Probe { until } => Some(*until),
        _ => None,
    })
}

/// Runs the unit's timers until it sends a probe: when it started and its `until`.
fn run_to_probe(p: &mut Pair) -> (Time, Time) {
    let mut last = Time::ZERO;
    for _ in 0..100 {
        let t = p.poll_timeout();
        assert!(t >= last, "timers run forward");
        p.handle_timeout(t);
        if let Some(until) = probe_until(&outputs(p)) {
            return (t, until);
        }
        last = t;
    }
    panic!("no probe in 100 timeouts");
}

#[test]
fn a_lone_unit_takes_over_only_after_dead_after_and_a_witness_that_answers() {
    let mut p = Pair::new(settings(1), Time::ZERO, 4);
    assert!(matches!(outputs(&mut p)[..], [Output::Send(Status { role: Role::Starting, term: 4, .. })]));
    assert_eq!(p.poll_timeout(), Time::from_millis(50));
    // The probe starts once the first heartbeat is a quarter heartbeat overdue (62.5
    // ms), and waits for the peer until the silence reaches dead_after.
    assert_eq!(run_to_probe(&mut p), (Time(62_500), Time::from_millis(150)));
    // No witness: it stays out of service, and asks again at once (the probe outlasted
    // a heartbeat); past dead_after, for the short window.
    p.probed(Time::from_millis(150), false, None);
    assert_eq!(p.role(), Role::Starting);
    assert_eq!(probe_until(&outputs(&mut p)), Some(Time(162_500)));
    p.probed(Time::from_millis(204), true, None);
    assert_eq!((p.role(), p.term()), (Role::Active, 5), "unit 1 takes the next odd term");
    assert!(outputs(&mut p).contains(&Output::Role { role: Role::Active, term: 5 }));
}

#[test]
fn a_witness_answering_before_dead_after_is_no_takeover_yet() {
    // The shell hands over the probe's result early only if the peer answered; were
    // it to come early without, the silence is not yet dead_after: no takeover.
    let mut p = Pair::new(settings(0), Time::ZERO, 0);
    let active = Status { term: 3, role: Role::Active, priority: 100, unit: 1, handover: false };
    p.handle_frame(Time::from_millis(10), active);
    outputs(&mut p);
    assert_eq!(run_to_probe(&mut p), (Time(72_500), Time::from_millis(160)));
    p.probed(Time::from_millis(150), true, None);
    assert_eq!(p.role(), Role::Standby);
    // It asks again for the rest of the silence (and a short window on).
    assert_eq!(probe_until(&outputs(&mut p)), Some(Time(162_500)));
    // A late heartbeat within dead_after: it carries on standing by even though that
    // probe finds nobody on the LAN, and probes again only when the new silence nears
    // dead_after.
    p.handle_frame(Time::from_millis(155), active);
    p.probed(Time(162_500), true, None);
    assert_eq!(p.role(), Role::Standby);
    assert_eq!(run_to_probe(&mut p), (Time(217_500), Time::from_millis(305)));
    p.probed(Time::from_millis(305), true, None);
    assert_eq!(p.role(), Role::Active);
}

#[test]
fn an_active_hearing_a_higher_term_active_steps_down_at_once_and_a_lower_one_is_ignored() {
    let mut p = Pair::new(settings(0), Time::ZERO, 0);
    p.handle_timeout(Time(137_500));
    p.probed(Time::from_millis(150), true, None);
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
    assert_eq!(probe_until(&outputs(&mut p)), Some(Time(62_500)), "probes at once, for the short window");
    // The peer answers over the LAN (the ICMP error was forged or stale): no takeover.
    p.probed(Time::from_millis(52), true, Some(active(52)));
    assert_eq!(p.role(), Role::Standby);
    // Gone again, and this time nobody answers but the witness: it takes over at 60 ms,
    // long before dead_after (150 ms) of silence.
    p.peer_gone(Time::from_millis(60));
    let mut t = Time::from_millis(60);
    while probe_until(&outputs(&mut p)).is_none() {
        t = p.poll_timeout();
        assert!(t < Time::from_millis(150), "no probe before dead_after");
        p.handle_timeout(t);
    }
    p.probed(t + Duration::from_millis(2), true, None);
    assert_eq!(p.role(), Role::Active);
}

#[test]
fn a_serving_peer_heard_only_over_the_lan_may_answer_late_in_the_window_and_is_not_replaced() {
    // Windows: from a quarter heartbeat overdue up to dead_after, never under the
    // short one.
    let ms = Duration::from_millis;
    assert_eq!(probe_window(ms(50), ms(150)), Duration::from_micros(87_500));
    assert_eq!(probe_window(ms(50), ms(75)), Duration::from_micros(12_500));
    assert_eq!(probe_window(ms(200), ms(1000)), ms(750));
    assert_eq!(probe_window(ms(20), ms(30)), ms(5));
    // The peer link is cut; the active answers every probe over the LAN, each time 80 ms
    // into a probe of 87.5 ms (a busy host). The standby stays standby for ever.
    let mut p = Pair::new(settings(0), Time::ZERO, 0);
    let active = Status { term: 3, role: Role::Active, priority: 100, unit: 1, handover: false };
    p.handle_frame(Time::from_millis(10), active);
    outputs(&mut p);
    for _ in 0..20 {
        let (start, until) = run_to_probe(&mut p);
        assert_eq!(until.since(start), Duration::from_micros(87_500));
        p.probed(start + ms(80), true, Some(active));
        assert_eq!(p.role(), Role::Standby);
    }
    assert_eq!(p.term(), 0, "never took over");
}
