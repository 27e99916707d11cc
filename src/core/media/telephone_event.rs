//! RFC 4733 telephone events (DTMF over RTP): the 4-byte payload, the packet run a
//! sender emits for one key press, and a receiver that turns a stream of event
//! packets (duplicates, redundant end packets, reordering, loss) into exactly one
//! start and one end per event. Time is an argument; nothing here reads a clock.

use super::dtmf::Digit;
use crate::core::Time;
use std::collections::VecDeque;
use std::time::Duration;

/// One RFC 4733 event block (section 2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-15 are the DTMF keys (see `Digit`), others are tones/flash.
    pub event: u8,
    /// E bit: this is (a retransmission of) the final packet of the event.
    pub end: bool,
    /// Power level as -dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

/// Why a telephone-event payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventError {
    /// Fewer than 4 bytes.
    TooShort(usize),
    /// Not a whole number of 4-byte blocks.
    BadLength(usize),
}

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventError::TooShort(n) => write!(f, "telephone-event payload too short ({n} bytes)"),
            EventError::BadLength(n) => write!(f, "telephone-event payload of {n} bytes is not 4-byte blocks"),
        }
    }
}

impl std::error::Error for EventError {}

impl TelephoneEvent {
    /// The event for a DTMF key.
    pub fn digit(d: Digit, end: bool, volume: u8, duration: u16) -> Self {
        TelephoneEvent { event: d.event(), end, volume: volume.min(63), duration }
    }

    /// The DTMF key, if the event is one.
    pub fn as_digit(&self) -> Option<Digit> {
        Digit::from_event(self.event)
    }

    /// The 4 payload bytes (the R bit is sent as 0).
    pub fn encode(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [self.event, (u8::from(self.end) << 7) | (self.volume & 0x3F), d[0], d[1]]
    }

    /// Parses the first event block of a payload.
    pub fn decode(payload: &[u8]) -> Result<Self, EventError> {
        if payload.len() < 4 {
            return Err(EventError::TooShort(payload.len()));
        }
        if !payload.len().is_multiple_of(4) {
            return Err(EventError::BadLength(payload.len()));
        }
        Ok(TelephoneEvent {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3F,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }
}

/// The payloads a sender emits for one event lasting `total` timestamp units, one
/// every `interval` units (RFC 4733 section 2.5.1): the first with the marker bit,
/// then growing durations, then the end packet three times. Each item is
/// `(marker, event)`; all share the event's RTP timestamp.
pub fn sender_run(event: u8, volume: u8, total: u16, interval: u16) -> Vec<(bool, TelephoneEvent)> {
    let interval = interval.max(1);
    let mut out = Vec::new();
    let mut d = interval.min(total);
    loop {
        let end = d >= total;
        let e = TelephoneEvent { event, end, volume: volume.min(63), duration: d };
        out.push((out.is_empty(), e));
        if end {
            out.push((false, e));
            out.push((false, e));
            return out;
        }
        d = d.saturating_add(interval).min(total);
    }
}

/// What the receiver reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceivedEvent {
    /// A new event began (reported once, on its first packet to arrive).
    Start { event: u8, timestamp: u32 },
    /// The event ended: by its end bit, by a newer event, or by timeout. `duration`
    /// is in timestamp units (summed over segments of very long events).
    End { event: u8, timestamp: u32, duration: u32, timed_out: bool },
}

/// An event with no packet for this long is ended (end packets lost).
pub const EVENT_TIMEOUT: Duration = Duration::from_millis(500);
/// Ended event timestamps remembered, so late and redundant packets are ignored.
const REMEMBERED: usize = 8;
/// Reports queued at most; older ones are dropped past this.
pub const EVENT_QUEUE: usize = 32;

#[derive(Clone, Copy, Debug)]
struct Current {
    event: u8,
    /// Timestamp the event was first reported under.
    first_ts: u32,
    /// Timestamp of the segment now running (differs for very long events).
    ts: u32,
    /// Duration of earlier segments plus this one's largest.
    done: u32,
    seg: u16,
    last_seen: Time,
}

/// Turns RFC 4733 packets into `ReceivedEvent`s exactly once each.
#[derive(Clone, Debug, Default)]
pub struct EventReceiver {
    current: Option<Current>,
    ended: VecDeque<u32>,
    events: VecDeque<ReceivedEvent>,
}

fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl EventReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    fn emit(&mut self, e: ReceivedEvent) {
        if self.events.len() >= EVENT_QUEUE {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn finish(&mut self, timed_out: bool) {
        if let Some(c) = self.current.take() {
            self.emit(ReceivedEvent::End {
                event: c.event,
                timestamp: c.first_ts,
                duration: c.done.saturating_add(u32::from(c.seg)),
                timed_out,
            });
            self.remember(c.ts);
        }
    }

    fn remember(&mut self, ts: u32) {
        if self.ended.len() >= REMEMBERED {
            self.ended.pop_front();
        }
        self.ended.push_back(ts);
    }

    /// One received telephone-event packet: its RTP marker bit and timestamp.
    pub fn handle_packet(&mut self, now: Time, marker: bool, timestamp: u32, ev: &TelephoneEvent) {
        if self.ended.contains(&timestamp) {
            return; // redundant end packet or late packet of a finished event
        }
        if let Some(c) = &mut self.current {
            if timestamp == c.ts {
                if ev.event == c.event {
                    c.seg = c.seg.max(ev.duration);
                    c.last_seen = now;
                    if ev.end {
                        self.finish(false);
                    }
                }
                return;
            }
            if !newer(timestamp, c.ts) {
                return; // older than the running event: a lost event's straggler
            }
            // A long event continues under a new timestamp when its 16-bit duration
            // ran out (RFC 4733 section 2.5.1.3): same event, no marker, right after.
            let seg_end = c.ts.wrapping_add(u32::from(c.seg));
            if ev.event == c.event && !marker && c.seg >= 0xFF00 && timestamp.wrapping_sub(seg_end) < 0x1000 {
                let old = c.ts;
                // A peer can keep an event going for ever: the sum saturates.
                c.done = c.done.saturating_add(u32::from(c.seg));
                c.ts = timestamp;
                c.seg = ev.duration;
                c.last_seen = now;
                self.remember(old);
                if ev.end {
                    self.finish(false);
                }
                return;
            }
            self.finish(false);
        }
        self.emit(ReceivedEvent::Start { event: ev.event, timestamp });
        self.current = Some(Current {
            event: ev.event,
            first_ts: timestamp,
            ts: timestamp,
            done: 0,
            seg: ev.duration,
            last_seen: now,
        });
        if ev.end {
            self.finish(false);
        }
    }

    /// When to call `handle_timeout` next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.current.map(|c| c.last_seen + EVENT_TIMEOUT)
    }

    /// Ends a running event whose packets stopped coming.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.finish(true);
        }
    }

    /// The next report, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ReceivedEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_encode_and_decode_as_rfc4733_bytes_ignoring_r_and_refusing_bad_lengths() {
        // RFC 4733 figure 2 layout: event 5, E=1, volume 10, duration 800 (0x0320).
        let e = TelephoneEvent { event: 5, end: true, volume: 10, duration: 800 };
        assert_eq!(e.encode(), [0x05, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::decode(&[0x05, 0x8A, 0x03, 0x20]), Ok(e));
        // R bit set by a peer is ignored; volume keeps 6 bits.
        let d = TelephoneEvent::decode(&[0x0B, 0x7F, 0xFF, 0xFF]).unwrap();
        assert_eq!(d, TelephoneEvent { event: 11, end: false, volume: 63, duration: 0xFFFF });
        assert_eq!(d.as_digit().unwrap().to_char(), '#');
        assert_eq!(TelephoneEvent::decode(&[1, 2, 3]), Err(EventError::TooShort(3)));
        assert_eq!(TelephoneEvent::decode(&[1, 2, 3, 4, 5]), Err(EventError::BadLength(5)));
        assert_eq!(TelephoneEvent::digit(Digit::from_char('*').unwrap(), false, 99, 160).encode(), [10, 63, 0, 160]);
    }

    fn drain(rx: &mut EventReceiver) -> Vec<ReceivedEvent> {
        std::iter::from_fn(|| rx.poll_event()).collect()
    }

    fn feed(rx: &mut EventReceiver, t0: u64, ts: u32, run: &[(bool, TelephoneEvent)]) -> u64 {
        let mut t = t0;
        for (m, e) in run {
            rx.handle_packet(Time::from_millis(t), *m, ts, e);
            t += 50;
        }
        t
    }

    #[test]
    fn a_sender_run_is_a_marked_start_then_three_end_packets_of_the_full_duration() {
        let run = sender_run(1, 10, 800, 400);
        let d: Vec<(bool, u16, bool)> = run.iter().map(|(m, e)| (*m, e.duration, e.end)).collect();
        assert_eq!(d, vec![(true, 400, false), (false, 800, true), (false, 800, true), (false, 800, true)]);
    }

    #[test]
    fn one_start_and_one_end_per_event_despite_redundancy() {
        let mut rx = EventReceiver::new();
        let run = sender_run(7, 10, 1600, 400);
        let t = feed(&mut rx, 0, 1000, &run);
        // The whole run again (network duplication), then another digit.
        let t = feed(&mut rx, t, 1000, &run);
        feed(&mut rx, t, 5000, &sender_run(7, 10, 800, 400));
        let ev = drain(&mut rx);
        assert_eq!(
            ev,
            vec![
                ReceivedEvent::Start { event: 7, timestamp: 1000 },
                ReceivedEvent::End { event: 7, timestamp: 1000, duration: 1600, timed_out: false },
                ReceivedEvent::Start { event: 7, timestamp: 5000 },
                ReceivedEvent::End { event: 7, timestamp: 5000, duration: 800, timed_out: false },
            ]
        );
    }

    #[test]
    fn events_survive_lost_starts_lost_ends_reordering_and_stragglers_and_time_out_once() {
        let mut rx = EventReceiver::new();
        let run = sender_run(3, 10, 2000, 400);
        // First two packets lost: the digit is reported on the first one that arrives.
        feed(&mut rx, 0, 100, &run[2..]);
        // Next event: packets arrive out of order, all end packets lost.
        let run2 = sender_run(4, 10, 2000, 400);
        let mut shuffled: Vec<_> = run2.iter().filter(|(_, e)| !e.end).copied().collect();
        shuffled.swap(0, 2);
        feed(&mut rx, 1000, 9000, &shuffled);
        // Third event starts: the second is ended by it.
        feed(&mut rx, 2000, 20_000, &sender_run(5, 10, 800, 400)[..1]);
        // A straggler of the second event after the third started is ignored.
        rx.handle_packet(Time::from_millis(2100), false, 9000, &run2[1].1);
        let ev = drain(&mut rx);
        let starts: Vec<u8> = ev
            .iter()
            .filter_map(|e| if let ReceivedEvent::Start { event, .. } = e { Some(*event) } else { None })
            .collect();
        assert_eq!(starts, vec![3, 4, 5]);
        assert_eq!(ev[1], ReceivedEvent::End { event: 3, timestamp: 100, duration: 2000, timed_out: false });
        assert_eq!(ev[3], ReceivedEvent::End { event: 4, timestamp: 9000, duration: 1600, timed_out: false });
        // The third never ends by packet: the timeout ends it once.
        assert_eq!(rx.poll_timeout(), Some(Time::from_millis(2000) + EVENT_TIMEOUT));
        rx.handle_timeout(Time::from_millis(2100));
        assert!(drain(&mut rx).is_empty());
        rx.handle_timeout(Time::from_millis(2500));
        assert_eq!(
            drain(&mut rx),
            vec![ReceivedEvent::End { event: 5, timestamp: 20_000, duration: 400, timed_out: true }]
        );
        rx.handle_timeout(Time::from_millis(9000));
        assert!(drain(&mut rx).is_empty());
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn only_end_packets_still_give_one_event() {
        let mut rx = EventReceiver::new();
        let run = sender_run(9, 10, 800, 400);
        feed(&mut rx, 0, 77, &run[1..]);
        assert_eq!(
            drain(&mut rx),
            vec![
                ReceivedEvent::Start { event: 9, timestamp: 77 },
                ReceivedEvent::End { event: 9, timestamp: 77, duration: 800, timed_out: false },
            ]
        );
    }

    #[test]
    fn long_event_continues_across_duration_overflow() {
        let mut rx = EventReceiver::new();
        let ts0 = u32::MAX - 100; // also crosses the timestamp wrap
        let e = |end, duration| TelephoneEvent { event: 1, end, volume: 10, duration };
        rx.handle_packet(Time::ZERO, true, ts0, &e(false, 400));
        rx.handle_packet(Time::from_millis(50), false, ts0, &e(false, 0xFFFF));
        let ts1 = ts0.wrapping_add(0xFFFF);
        rx.handle_packet(Time::from_millis(100), false, ts1, &e(false, 400));
        rx.handle_packet(Time::from_millis(150), false, ts1, &e(true, 800));
        rx.handle_packet(Time::from_millis(200), false, ts1, &e(true, 800));
        rx.handle_packet(Time::from_millis(250), false, ts0, &e(false, 0xFFFF));
        assert_eq!(
            drain(&mut rx),
            vec![
                ReceivedEvent::Start { event: 1, timestamp: ts0 },
                ReceivedEvent::End { event: 1, timestamp: ts0, duration: 0xFFFF + 800, timed_out: false },
            ]
        );
    }

    #[test]
    fn endless_event_duration_saturates() {
        // 65,800 full segments exceed u32 timestamp units: the sum must not overflow.
        let mut rx = EventReceiver::new();
        let e = |end, duration| TelephoneEvent { event: 2, end, volume: 10, duration };
        let mut ts = 0u32;
        rx.handle_packet(Time::ZERO, true, ts, &e(false, 0xFFFF));
        for _ in 0..65_800 {
            ts = ts.wrapping_add(0xFFFF);
            rx.handle_packet(Time::ZERO, false, ts, &e(false, 0xFFFF));
        }
        rx.handle_packet(Time::ZERO, false, ts, &e(true, 0xFFFF));
        let got = drain(&mut rx);
        assert_eq!(got.first(), Some(&ReceivedEvent::Start { event: 2, timestamp: 0 }));
        assert_eq!(got.last(), Some(&ReceivedEvent::End { event: 2, timestamp: 0, duration: u32::MAX, timed_out: false }));
    }
}
