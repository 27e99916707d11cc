//! The engine's randomness: a seeded ChaCha stream. The shell seeds it from the
//! kernel's entropy in production; tests seed it with a constant so every run is the
//! same. Tags, branches, Call-IDs and nonces all come from here.

use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

/// Seeded, reproducible random source owned by the engine.
pub struct EngineRng {
    inner: ChaCha12Rng,
}

impl EngineRng {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        EngineRng { inner: ChaCha12Rng::from_seed(seed) }
    }

    /// Convenience for tests: expand a small seed.
    pub fn seed_from_u64(seed: u64) -> Self {
        EngineRng { inner: ChaCha12Rng::seed_from_u64(seed) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        self.inner.fill_bytes(buf);
    }

    /// `len` random characters from `[0-9a-z]`: SIP tags, branch suffixes, Call-IDs.
    pub fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        (0..len)
            .map(|_| ALPHABET[(self.next_u64() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    /// `bytes` random bytes as lowercase hex: nonces.
    pub fn hex(&mut self, bytes: usize) -> String {
        let mut b = vec![0u8; bytes];
        self.fill(&mut b);
        crate::codec::hex(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_same_seed_gives_the_same_stream_and_another_seed_a_different_one() {
        let mut a = EngineRng::seed_from_u64(7);
        let mut b = EngineRng::seed_from_u64(7);
        assert_eq!(a.token(16), b.token(16));
        assert_eq!(a.hex(8), b.hex(8));
        let mut c = EngineRng::seed_from_u64(8);
        assert_ne!(a.token(16), c.token(16));
    }
}
