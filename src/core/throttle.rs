//! Scanner throttling: counts authentication failures (and other abuse) per source
//! address in a fixed window; a source over the limit is banned for a while and its
//! requests are dropped unanswered. The table is bounded: when full, the entry with
//! the fewest failures is forgotten first.

use super::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Sources tracked at once.
pub const SOURCES_TRACKED: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottlePolicy {
    /// Failures allowed within `window` before a ban.
    pub limit: u32,
    pub window: Duration,
    pub ban: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy { limit: 10, window: Duration::from_secs(60), ban: Duration::from_secs(600) }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    window_start: Time,
    failures: u32,
    banned_until: Option<Time>,
}

/// What a failure did to its source.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Counted(u32),
    /// This failure crossed the limit: the source is now banned until the time given.
    Banned(Time),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Throttle {
    policy: ThrottlePolicy,
    entries: HashMap<IpAddr, Entry>,
    /// Requests dropped because their source was banned.
    pub dropped: u64,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Throttle {
        Throttle { policy, entries: HashMap::new(), dropped: 0 }
    }

    pub fn set_policy(&mut self, policy: ThrottlePolicy) {
        self.policy = policy;
    }

    /// Whether requests from `src` are to be dropped now (counts the drop).
    pub fn is_banned(&mut self, now: Time, src: IpAddr) -> bool {
        let banned = self.entries.get(&src).and_then(|e| e.banned_until).is_some_and(|t| now < t);
        if banned {
            self.dropped += 1;
        }
        banned
    }

    /// Records a failure from `src`.
    pub fn failure(&mut self, now: Time, src: IpAddr) -> Verdict {
        if !self.entries.contains_key(&src) && self.entries.len() >= SOURCES_TRACKED {
            self.evict(now);
        }
        let p = self.policy;
        let e = self.entries.entry(src).or_insert(Entry { window_start: now, failures: 0, banned_until: None });
        if now.since(e.window_start) > p.window {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= p.limit && e.banned_until.is_none_or(|t| t <= now) {
            let until = now + p.ban;
            e.banned_until = Some(until);
            return Verdict::Banned(until);
        }
        Verdict::Counted(e.failures)
    }

    /// A success clears the source's failure count (not an active ban).
    pub fn success(&mut self, src: IpAddr) {
        if let Some(e) = self.entries.get_mut(&src) {
            e.failures = 0;
        }
    }

    /// Forgets sources with nothing left to remember.
    pub fn sweep(&mut self, now: Time) {
        let w = self.policy.window;
        self.entries.retain(|_, e| e.banned_until.is_some_and(|t| now < t) || now.since(e.window_start) <= w);
    }

    fn evict(&mut self, now: Time) {
        self.sweep(now);
        if self.entries.len() < SOURCES_TRACKED {
            return;
        }
        let victim = self.entries.iter().filter(|(_, e)| e.banned_until.is_none()).min_by_key(|(_, e)| e.failures).map(|(k, _)| *k);
        if let Some(v) = victim.or_else(|| self.entries.keys().next().copied()) {
            self.entries.remove(&v);
        }
    }

    pub fn tracked(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_after_limit_within_window_and_lifts_after_ban() {
        let p = ThrottlePolicy { limit: 3, window: Duration::from_secs(10), ban: Duration::from_secs(60) };
        let mut t = Throttle::new(p);
        let a: IpAddr = "127.0.0.9".parse().unwrap();
        assert_eq!(t.failure(Time::ZERO, a), Verdict::Counted(1));
        assert_eq!(t.failure(Time::from_millis(1000), a), Verdict::Counted(2));
        assert_eq!(t.failure(Time::from_millis(2000), a), Verdict::Banned(Time::from_millis(62_000)));
        assert!(t.is_banned(Time::from_millis(61_999), a));
        assert!(!t.is_banned(Time::from_millis(62_000), a));
        assert_eq!(t.dropped, 1);
        // Failures spread wider than the window never ban.
        let b: IpAddr = "127.0.0.10".parse().unwrap();
        for i in 0..10 {
            assert!(matches!(t.failure(Time::from_millis(i * 11_000), b), Verdict::Counted(1)));
        }
    }

    #[test]
    fn table_stays_bounded_under_a_flood_of_sources() {
        let mut t = Throttle::new(ThrottlePolicy { limit: 1, ..Default::default() });
        let banned: IpAddr = "10.255.255.255".parse().unwrap();
        t.failure(Time::ZERO, banned);
        for i in 0..(SOURCES_TRACKED as u32 * 2) {
            let ip = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) + 1));
            t.failure(Time::ZERO, ip);
        }
        assert!(t.tracked() <= SOURCES_TRACKED);
    }
}
