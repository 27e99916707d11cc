//! Codecs below the configuration and the engine: pure functions from bytes to values
//! and back that hold no state and import nothing of the crate but `limits`. They sit
//! at the bottom of the module graph because both `config` (the music-on-hold file is
//! checked at load) and the shell (stream framing) use them beside the engine. The
//! other wire codecs live in `core` next to their users; docs/ARCHITECTURE.md lists
//! every codec and its entry function.

pub mod callerid;
pub mod framing;
pub mod g711;
pub mod icmp;
pub mod wav;

/// `bytes` as lowercase hex digits (digest hashes and nonces, generated secrets).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for &x in bytes {
        out.push(char::from(DIGITS[usize::from(x >> 4)]));
        out.push(char::from(DIGITS[usize::from(x & 0xf)]));
    }
    out
}

/// Narrowband telephony sample rate (Hz).
pub const SAMPLE_RATE: u32 = 8000;
