//! Credentials: SIP passwords and CTI application secrets, the weak-password rules,
//! Argon2 hashing for `ctibox hash-secret`, and "generate": fresh random secrets kept
//! in `<data_dir>/secrets.toml` (mode 0600). Randomness is injected; no clock.
//!
//! Generated CTI app secrets are kept as plaintext in secrets.toml (the operator hands
//! them to the application) and in memory as `AppSecret::Generated`, verified by a
//! constant-time comparison; configured ones are Argon2id PHC strings verified by argon2.

use super::model::{Config, DeviceKind};
use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The word that asks for a generated credential.
pub const GENERATE: &str = "generate";
/// File name of the generated credentials inside the data directory.
pub const SECRETS_FILE: &str = "secrets.toml";
const SIP_PASSWORD_LEN: usize = 20;
const APP_SECRET_LEN: usize = 32;
/// No '0', 'O', '1', 'l', 'I': read aloud and typed into phones. 32 symbols: 5 bits each.
const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz23456789A";

/// A SIP digest password (phones and trunks). Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    Plain(String),
    /// Not yet resolved: `resolve_generated` replaces it.
    Generate,
}

impl Password {
    pub fn plain(&self) -> Option<&str> {
        match self {
            Password::Plain(p) => Some(p),
            Password::Generate => None,
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Password::Plain(_) => "Password(<redacted>)",
            Password::Generate => "Password(generate)",
        })
    }
}

/// The peer link's key: 32 bytes, written as 64 hex digits, or "generate" (made once
/// and kept in secrets.toml; the operator copies it into the other box's `peer.key`).
#[derive(Clone, PartialEq, Eq)]
pub enum PairKey {
    Key([u8; 32]),
    Generate,
}

impl PairKey {
    pub fn parse(s: &str) -> Option<PairKey> {
        if s == GENERATE {
            return Some(PairKey::Generate);
        }
        let hex = s.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (k, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |b: u8| char::from(b).to_digit(16);
            *k = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
        }
        Some(PairKey::Key(key))
    }

    /// The key's bytes, once resolved (not while it still says "generate").
    pub fn bytes(&self) -> Option<&[u8; 32]> {
        match self {
            PairKey::Key(k) => Some(k),
            PairKey::Generate => None,
        }
    }
}

impl fmt::Debug for PairKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PairKey::Key(_) => "PairKey(<redacted>)",
            PairKey::Generate => "PairKey(generate)",
        })
    }
}

/// A CTI application's secret. Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub enum AppSecret {
    /// An Argon2id PHC string from the configuration.
    Hash(String),
    /// Not yet resolved: `resolve_generated` replaces it.
    Generate,
    /// Generated plaintext from secrets.toml.
    Generated(String),
}

impl AppSecret {
    /// Whether `presented` is the secret. Unresolved `Generate` never verifies.
    pub fn verify(&self, presented: &str) -> bool {
        match self {
            AppSecret::Hash(phc) => verify_phc(phc, presented),
            AppSecret::Generate => false,
            AppSecret::Generated(s) => constant_time_eq(s.as_bytes(), presented.as_bytes()),
        }
    }
}

impl fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppSecret::Hash(_) => "AppSecret(argon2id)",
            AppSecret::Generate => "AppSecret(generate)",
            AppSecret::Generated(_) => "AppSecret(<generated>)",
        })
    }
}

/// Equality whose time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

/// Largest Argon2 memory cost accepted in a configured secret (KiB): one login must
/// not take more than this from a 1 GiB board (the default is 19 MiB).
pub const ARGON2_MAX_M_KIB: u32 = 64 * 1024;
/// Largest Argon2 pass count accepted.
pub const ARGON2_MAX_T: u32 = 8;
/// Largest memory x passes (KiB): bounds one verification's time (about 4 x the
/// default's, some 0.3 s on a Raspberry Pi 4).
pub const ARGON2_MAX_WORK: u64 = 160 * 1024;
/// Largest Argon2 parallelism accepted (the box verifies on one thread).
pub const ARGON2_MAX_P: u32 = 4;

/// Checks an app secret's form: "generate" or an Argon2id PHC string whose cost a
/// small board can afford on every login.
pub fn parse_app_secret(s: &str) -> Result<AppSecret, String> {
    if s == GENERATE {
        return Ok(AppSecret::Generate);
    }
    if !s.starts_with("$argon2id$") {
        return Err("must be \"generate\" or an Argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$SALT$HASH; see `ctibox hash-secret`)".into());
    }
    let h = match PasswordHash::new(s) {
        Ok(h) if h.hash.is_some() && h.salt.is_some() => h,
        Ok(_) => return Err("is an Argon2id PHC string without salt or hash".into()),
        Err(_) => return Err("is not a well-formed Argon2id PHC string".into()),
    };
    let p = argon2::Params::try_from(&h).map_err(|e| format!("has Argon2 parameters that are not valid: {e}"))?;
    let (m, t, par) = (p.m_cost(), p.t_cost(), p.p_cost());
    if m > ARGON2_MAX_M_KIB || t > ARGON2_MAX_T || par > ARGON2_MAX_P || u64::from(m) * u64::from(t) > ARGON2_MAX_WORK {
        return Err(format!(
            "costs more than the box affords per login (m={m} KiB, t={t}, p={par}; at most m={ARGON2_MAX_M_KIB}, t={ARGON2_MAX_T}, p={ARGON2_MAX_P}, m*t={ARGON2_MAX_WORK}); hash it again with `ctibox hash-secret`"
        ));
    }
    Ok(AppSecret::Hash(s.to_string()))
}

/// Verifies `presented` against an Argon2id PHC string. Slow on purpose (tens of
/// milliseconds): the shell runs it on its verifier thread, never on the engine loop.
pub fn verify_phc(phc: &str, presented: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(presented.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// Hashes a secret for an `[[app_user]] secret` (Argon2id, default parameters).
pub fn hash_secret(plain: &str, salt: &[u8; 16]) -> Result<String, argon2::password_hash::Error> {
    Argon2::default().hash_password_with_salt(plain.as_bytes(), salt).map(|h| h.to_string())
}

const WELL_KNOWN: &[&str] = &[
    "password", "password1", "passw0rd", "p@ssw0rd", "12345678", "123456789", "1234567890", "87654321",
    "11111111", "00000000", "qwertyui", "qwertyuiop", "asdfghjk", "abcdefgh", "abcd1234", "changeme",
    "letmein1", "iloveyou", "admin123", "administrator", "welcome1", "cisco123", "secret123", "sunshine",
    "trustno1", "football", "baseball", "superman", "default1", "voip1234", "asterisk", "ctibox12",
];

/// Why a SIP password is refused, if it is; `names` are the username, device name and DNs.
pub fn weakness(password: &str, names: &[&str]) -> Option<&'static str> {
    let lower = password.to_ascii_lowercase();
    if password.chars().count() < 8 {
        return Some("shorter than 8 characters");
    }
    if WELL_KNOWN.contains(&lower.as_str()) {
        return Some("a well-known password");
    }
    if names.iter().any(|n| !n.is_empty() && lower.contains(&n.to_ascii_lowercase())) {
        return Some("contains the username, device name or number");
    }
    let b = lower.as_bytes();
    if b.iter().all(|&c| c == b[0]) {
        return Some("one character repeated");
    }
    let step = i16::from(b[1]) - i16::from(b[0]);
    if step.abs() == 1 && b.windows(2).all(|w| i16::from(w[1]) - i16::from(w[0]) == step) {
        return Some("a keyboard or digit sequence");
    }
    if password.chars().any(char::is_control) {
        return Some("contains a control character");
    }
    None
}

fn random_text(len: usize, fill_random: &mut dyn FnMut(&mut [u8])) -> String {
    let mut bytes = vec![0u8; len];
    fill_random(&mut bytes);
    bytes.iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])).collect()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    #[serde(default)]
    sip_phone: BTreeMap<String, String>,
    #[serde(default)]
    app_user: BTreeMap<String, String>,
    /// `key`: the pair key, 64 hex digits.
    #[serde(default)]
    peer: BTreeMap<String, String>,
}

fn render(s: &SecretsFile) -> String {
    let mut out = String::from(
        "# ctibox generated credentials. Keep private (mode 0600).\n\
         # Delete an entry to have a new secret generated at the next start.\n\n[sip_phone]\n",
    );
    for (k, v) in &s.sip_phone {
        out.push_str(&format!("{k:?} = {v:?}\n"));
    }
    out.push_str("\n[app_user]\n");
    for (k, v) in &s.app_user {
        out.push_str(&format!("{k:?} = {v:?}\n"));
    }
    if !s.peer.is_empty() {
        out.push_str("\n# The pair key: the other box's [peer] key is this same value.\n[peer]\n");
        for (k, v) in &s.peer {
            out.push_str(&format!("{k} = {v:?}\n"));
        }
    }
    out
}

/// Replaces every "generate" credential with its secret from `<data_dir>/secrets.toml`,
/// creating the file or adding missing entries with fresh random secrets. Returns lines
/// for the operator.
#[allow(clippy::disallowed_methods)] // reads and writes secrets.toml at start, in the shell
pub fn resolve_generated(
    cfg: &mut Config,
    data_dir: &Path,
    fill_random: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<String>, String> {
    let wants_phone = |k: &DeviceKind| matches!(k, DeviceKind::SipPhone { password: Password::Generate, .. });
    let wants_key = cfg.peer.as_ref().is_some_and(|p| p.key == PairKey::Generate);
    let any = cfg.devices.iter().any(|d| wants_phone(&d.kind)) || cfg.app_users.iter().any(|a| a.secret == AppSecret::Generate) || wants_key;
    if !any {
        return Ok(Vec::new());
    }
    let path: PathBuf = data_dir.join(SECRETS_FILE);
    let mut lines = Vec::new();
    let mut file = match std::fs::read_to_string(&path) {
        Ok(text) => {
            tighten_mode(&path, &mut lines)?;
            toml::from_str::<SecretsFile>(&text).map_err(|e| format!("{}: {}", path.display(), e.message().trim_end()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SecretsFile::default(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut added = 0;
    for d in &mut cfg.devices {
        if let DeviceKind::SipPhone { password, .. } = &mut d.kind {
            if *password == Password::Generate {
                let s = file.sip_phone.entry(d.name.clone()).or_insert_with(|| {
                    added += 1;
                    random_text(SIP_PASSWORD_LEN, fill_random)
                });
                if s.len() < 16 {
                    return Err(format!("{}: sip_phone {:?} is shorter than 16 characters; delete it to regenerate", path.display(), d.name));
                }
                *password = Password::Plain(s.clone());
            }
        }
    }
    for a in &mut cfg.app_users {
        if a.secret == AppSecret::Generate {
            let s = file.app_user.entry(a.name.clone()).or_insert_with(|| {
                added += 1;
                random_text(APP_SECRET_LEN, fill_random)
            });
            if s.len() < 16 {
                return Err(format!("{}: app_user {:?} is shorter than 16 characters; delete it to regenerate", path.display(), a.name));
            }
            a.secret = AppSecret::Generated(s.clone());
        }
    }
    if let Some(p) = cfg.peer.as_mut().filter(|p| p.key == PairKey::Generate) {
        let hex = file.peer.entry("key".into()).or_insert_with(|| {
            added += 1;
            let mut k = [0u8; 32];
            fill_random(&mut k);
            crate::codec::hex(&k)
        });
        p.key = match PairKey::parse(hex) {
            Some(k @ PairKey::Key(_)) => k,
            _ => return Err(format!("{}: [peer] key is not 64 hex digits; delete it to regenerate", path.display())),
        };
        lines.push(format!("the pair key is [peer] key in {}: copy it to the other box's peer.key", path.display()));
    }
    if added > 0 {
        write_private(&path, render(&file).as_bytes())?;
        lines.push(format!("generated {added} new credential(s) in {}", path.display()));
    }
    lines.push(format!("generated credentials are in {}", path.display()));
    Ok(lines)
}

#[allow(clippy::disallowed_methods)] // stats secrets.toml, in the shell
fn tighten_mode(path: &Path, lines: &mut Vec<String>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
        lines.push(format!("{} was readable by others; now mode 0600", path.display()));
    }
    Ok(())
}

/// Atomic write with the file created 0600 (umask tightened around the write, so the
/// temporary file is never readable by others either), then the mode made sure.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use nix::sys::stat::{umask, Mode};
    use std::os::unix::fs::PermissionsExt;
    let old = umask(Mode::from_bits_truncate(0o077));
    let r = crate::persist::write_atomic(path, bytes);
    umask(old);
    r.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_well_known_repeated_sequential_or_name_containing_passwords_are_refused() {
        assert_eq!(weakness("1234", &[]), Some("shorter than 8 characters"));
        assert_eq!(weakness("Password", &[]), Some("a well-known password"));
        assert_eq!(weakness("alice-secret-9", &["alice"]), Some("contains the username, device name or number"));
        assert_eq!(weakness("zzzzzzzzzz", &[]), Some("one character repeated"));
        assert_eq!(weakness("3456789a", &[]), None);
        assert_eq!(weakness("23456789", &[]), Some("a keyboard or digit sequence"));
        assert_eq!(weakness("k7#Vq2!pLm", &["alice", "1001"]), None);
    }

    #[test]
    fn constant_time_eq_is_true_only_for_equal_bytes_of_equal_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn an_app_secret_is_generate_or_an_argon2id_phc_that_verifies_only_its_secret() {
        assert_eq!(parse_app_secret("generate"), Ok(AppSecret::Generate));
        assert!(parse_app_secret("hunter2").is_err());
        assert!(parse_app_secret("$argon2id$v=19$garbage").is_err());
        let h = hash_secret("s3cret-for-crm", &[7u8; 16]).unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        let s = parse_app_secret(&h).unwrap();
        assert!(s.verify("s3cret-for-crm"));
        assert!(!s.verify("s3cret-for-crn"));
        assert!(AppSecret::Generated("abc".into()).verify("abc"));
        assert!(!AppSecret::Generate.verify(""));
    }

    #[test]
    fn a_password_debug_prints_redacted() {
        assert_eq!(format!("{:?}", Password::Plain("x".into())), "Password(<redacted>)");
    }

    #[test]
    fn argon2_costs_a_board_cannot_afford_are_refused() {
        let h = hash_secret("s3cret-for-crm", &[7u8; 16]).unwrap();
        assert!(h.contains("$m=19456,t=2,p=1$"), "{h}");
        for (params, why) in [
            ("m=1048576,t=2,p=1", "m=1048576 KiB"),
            ("m=19456,t=64,p=1", "t=64"),
            ("m=19456,t=2,p=16", "p=16"),
            ("m=40000,t=8,p=1", "m=40000 KiB, t=8"),
        ] {
            let e = parse_app_secret(&h.replace("m=19456,t=2,p=1", params)).unwrap_err();
            assert!(e.contains("costs more than the box affords") && e.contains(why), "{params}: {e}");
        }
        // At the bounds it is accepted.
        assert!(parse_app_secret(&h.replace("m=19456,t=2,p=1", "m=65536,t=2,p=4")).is_ok());
    }
}
