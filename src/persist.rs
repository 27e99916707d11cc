//! Atomic files: a write either leaves the previous file or the new one, whole, even
//! if the process is killed or the power is cut mid-way (temp file, fsync, rename,
//! fsync directory). State blobs carry a magic, a version byte, a length checked
//! before decoding, and a CRC, so a damaged file is refused rather than half-read.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // the shell's file writer

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"CTBX";
/// Version of the state envelope (not of what is inside it).
pub const ENVELOPE_VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 4;

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp: PathBuf = dir.join(format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Wraps a payload: magic, version, length, payload, CRC-32 of all before it.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len() + 4);
    v.extend_from_slice(MAGIC);
    v.push(ENVELOPE_VERSION);
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

/// Why a sealed blob was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum UnsealError {
    TooShort,
    BadMagic,
    UnknownVersion(u8),
    TooLarge(usize),
    LengthMismatch,
    BadChecksum,
}

impl std::fmt::Display for UnsealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnsealError::TooShort => write!(f, "file too short to hold a state envelope"),
            UnsealError::BadMagic => write!(f, "not a ctibox state file (bad magic)"),
            UnsealError::UnknownVersion(v) => write!(f, "unknown state envelope version {v}"),
            UnsealError::TooLarge(n) => write!(f, "state payload of {n} bytes is over the limit"),
            UnsealError::LengthMismatch => write!(f, "state length does not match the file size"),
            UnsealError::BadChecksum => write!(f, "state checksum mismatch"),
        }
    }
}
impl std::error::Error for UnsealError {}

/// Checks and unwraps a sealed blob, returning the payload.
pub fn unseal(bytes: &[u8]) -> Result<&[u8], UnsealError> {
    if bytes.len() < HEADER + 4 {
        return Err(UnsealError::TooShort);
    }
    if &bytes[..4] != MAGIC {
        return Err(UnsealError::BadMagic);
    }
    if bytes[4] != ENVELOPE_VERSION {
        return Err(UnsealError::UnknownVersion(bytes[4]));
    }
    let len = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    if len > crate::limits::STATE_MAX_BYTES {
        return Err(UnsealError::TooLarge(len));
    }
    if bytes.len() != HEADER + len + 4 {
        return Err(UnsealError::LengthMismatch);
    }
    let (body, crc) = bytes.split_at(HEADER + len);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(UnsealError::BadChecksum);
    }
    Ok(&body[HEADER..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_unseals_and_a_flipped_bit_truncation_or_bad_magic_is_refused() {
        let sealed = seal(b"hello state");
        assert_eq!(unseal(&sealed).unwrap(), b"hello state");
        let mut bad = sealed.clone();
        bad[10] ^= 1;
        assert_eq!(unseal(&bad), Err(UnsealError::BadChecksum));
        assert_eq!(unseal(&sealed[..sealed.len() - 1]), Err(UnsealError::LengthMismatch));
        assert_eq!(unseal(b"XXXX\x01\0\0\0\0\0\0\0\0"), Err(UnsealError::BadMagic));
    }

    #[test]
    fn write_atomic_replaces_whole_file() {
        let dir = std::env::temp_dir().join(format!("ctibox-persist-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two two");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains(".tmp.")).collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
