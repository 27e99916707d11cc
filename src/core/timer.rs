//! Timers as data: a table of (deadline, key) pairs. State machines arm and cancel
//! entries; the engine asks for the earliest deadline (`poll_timeout`) and pops what
//! has expired when it is handed `Input::Timeout`. Nothing here reads a clock.

use super::time::Time;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// A deadline table keyed by `K` (one entry per key: re-arming replaces).
pub struct Timers<K: Ord + Hash + Clone> {
    by_deadline: BTreeSet<(Time, K)>,
    by_key: HashMap<K, Time>,
    room: super::Room,
}

/// As data, a timer table is its (key, deadline) pairs, earliest first.
impl<K: Ord + Hash + Clone + serde::Serialize> serde::Serialize for Timers<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.by_deadline.iter().map(|(t, k)| (k, *t)))
    }
}

impl<'de, K: Ord + Hash + Clone + serde::Deserialize<'de>> serde::Deserialize<'de> for Timers<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(K, Time)> = serde::Deserialize::deserialize(d)?;
        let mut t = Timers::default();
        for (k, at) in pairs {
            t.arm(k, at);
        }
        Ok(t)
    }
}

impl<K: Ord + Hash + Clone> Default for Timers<K> {
    fn default() -> Self {
        Timers { by_deadline: BTreeSet::new(), by_key: HashMap::new(), room: super::Room::default() }
    }
}

impl<K: Ord + Hash + Clone> Timers<K> {
    /// Arms (or re-arms) `key` to fire at `at`.
    pub fn arm(&mut self, key: K, at: Time) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_deadline.remove(&(old, key.clone()));
        }
        self.by_deadline.insert((at, key));
    }

    /// Cancels `key`; returns whether it was armed.
    pub fn cancel(&mut self, key: &K) -> bool {
        match self.by_key.remove(key) {
            Some(at) => self.by_deadline.remove(&(at, key.clone())),
            None => false,
        }
    }

    pub fn deadline(&self, key: &K) -> Option<Time> {
        self.by_key.get(key).copied()
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<Time> {
        self.by_deadline.first().map(|(t, _)| *t)
    }

    /// Removes and returns one key whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Time) -> Option<K> {
        let (at, _) = self.by_deadline.first()?;
        if *at > now {
            return None;
        }
        let (_, key) = self.by_deadline.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// Keys whose deadline is at or before `now`, earliest first (left armed).
    pub fn due(&self, now: Time) -> impl Iterator<Item = &K> {
        self.by_deadline.iter().take_while(move |(t, _)| *t <= now).map(|(_, k)| k)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }
    /// Gives back the memory of a table that has emptied out after load.
    pub fn shrink(&mut self) {
        super::tend_map(&mut self.by_key, &mut self.room);
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_table_round_trips_through_postcard_with_its_deadlines_and_order() {
        let mut t: Timers<(u64, u8)> = Timers::default();
        t.arm((7, 1), Time(300));
        t.arm((2, 0), Time(100));
        t.arm((7, 2), Time(200));
        let bytes = postcard::to_allocvec(&t).unwrap();
        let mut back: Timers<(u64, u8)> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!((back.deadline(&(7, 1)), back.deadline(&(7, 2)), back.next()), (Some(Time(300)), Some(Time(200)), Some(Time(100))));
        let order: Vec<_> = std::iter::from_fn(|| back.pop_expired(Time(1_000))).collect();
        assert_eq!(order, [(2, 0), (7, 2), (7, 1)]);
    }
    #[test]
    fn fires_in_order_and_rearm_replaces() {
        let mut t: Timers<u32> = Timers::default();
        t.arm(1, Time(30));
        t.arm(2, Time(10));
        t.arm(3, Time(20));
        t.arm(1, Time(5)); // re-arm moves it
        assert_eq!(t.next(), Some(Time(5)));
        assert!(t.cancel(&3));
        assert!(!t.cancel(&3));
        assert_eq!(t.pop_expired(Time(9)), Some(1));
        assert_eq!(t.pop_expired(Time(9)), None);
        assert_eq!(t.pop_expired(Time(10)), Some(2));
        assert!(t.is_empty());
    }
}
