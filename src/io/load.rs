//! How far behind the engine loop is: the time each SIP datagram waited in the
//! socket before the loop read it (the kernel's receive timestamp, SO_TIMESTAMPNS,
//! against the clock at the read). Like CoDel, the signal is the *smallest* wait over
//! a window: bursts make some datagrams wait, but only a loop that cannot keep up
//! leaves every datagram of a whole window waiting. Past `LOAD_BUSY_DELAY_MS` the
//! engine is told it is busy (`Input::Load`) and refuses new calls with 503 until the
//! smallest wait of a window falls under `LOAD_CLEAR_DELAY_MS`, so that the ACKs and
//! BYEs of calls in progress are read instead of lost in an overflowing buffer.

use std::time::{Duration, Instant};

pub struct LoadMeter {
    window: Duration,
    busy_at: Duration,
    clear_at: Duration,
    started: Option<Instant>,
    least: Option<Duration>,
    busy: bool,
}

impl Default for LoadMeter {
    fn default() -> Self {
        LoadMeter::new(
            Duration::from_millis(crate::limits::LOAD_WINDOW_MS),
            Duration::from_millis(crate::limits::LOAD_BUSY_DELAY_MS),
            Duration::from_millis(crate::limits::LOAD_CLEAR_DELAY_MS),
        )
    }
}

impl LoadMeter {
    pub fn new(window: Duration, busy_at: Duration, clear_at: Duration) -> LoadMeter {
        LoadMeter { window, busy_at, clear_at, started: None, least: None, busy: false }
    }

    /// A datagram read at `now` had waited `waited` in the socket. Returns the new
    /// state when a window closes with a change.
    pub fn observe(&mut self, now: Instant, waited: Duration) -> Option<bool> {
        let started = *self.started.get_or_insert(now);
        self.least = Some(self.least.map_or(waited, |l| l.min(waited)));
        if now.duration_since(started) < self.window {
            return None;
        }
        let least = self.least.take().unwrap_or_default();
        self.started = Some(now);
        let busy = if self.busy { least >= self.clear_at } else { least >= self.busy_at };
        (busy != self.busy).then(|| {
            self.busy = busy;
            busy
        })
    }

    /// The loop found the socket empty at `now`: nothing is waiting, so a busy state
    /// ends at once.
    pub fn drained(&mut self, now: Instant) -> Option<bool> {
        self.started = Some(now);
        self.least = None;
        std::mem::take(&mut self.busy).then_some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn only_a_window_in_which_every_datagram_waited_makes_the_loop_busy_and_a_drained_socket_clears_it() {
        let t0 = Instant::now();
        let mut m = LoadMeter::new(ms(500), ms(100), ms(20));
        // A burst: most datagrams wait long, one did not; the window closes not busy.
        assert_eq!(m.observe(t0, ms(300)), None);
        assert_eq!(m.observe(t0 + ms(100), ms(1)), None);
        assert_eq!(m.observe(t0 + ms(500), ms(400)), None, "the least wait was 1 ms");
        // A whole window of long waits: busy.
        assert_eq!(m.observe(t0 + ms(700), ms(150)), None);
        assert_eq!(m.observe(t0 + ms(1000), ms(120)), Some(true));
        // Waits under the busy mark but over the clear mark keep it busy.
        assert_eq!(m.observe(t0 + ms(1300), ms(50)), None);
        assert_eq!(m.observe(t0 + ms(1500), ms(40)), None);
        // Short waits for a window clear it.
        assert_eq!(m.observe(t0 + ms(1700), ms(5)), None);
        assert_eq!(m.observe(t0 + ms(2000), ms(3)), Some(false));
        // Busy again, then the loop finds the socket empty: clear at once.
        assert_eq!(m.observe(t0 + ms(2500), ms(200)), Some(true));
        assert_eq!(m.drained(t0 + ms(2600)), Some(false));
        assert_eq!(m.drained(t0 + ms(2700)), None);
    }
}
