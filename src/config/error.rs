//! Configuration errors as data: where (file:line:column) and why (a `Reason`, one
//! variant per kind of mistake, each with its own wording). No I/O here.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;

/// A configuration (or board file) refused at load: where and why.
/// Displays exactly as `file:line:column: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub reason: Reason,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.reason)
    }
}
impl std::error::Error for ConfigError {}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The file could not be read.
    Read { detail: String },
    TooLarge { bytes: usize, max: usize },
    /// Not TOML at all (the parser's own words).
    Syntax { detail: String },
    UnknownKey { key: String, table: String, expected: String },
    MissingKey { key: String, table: String },
    WrongType { found: String, expected: String },
    /// A value the TOML deserializer refused for a reason not listed above.
    BadValue { detail: String },
    OutOfRange { key: &'static str, value: i64, min: i64, max: i64 },
    NotOneOf { key: &'static str, value: String, allowed: &'static [&'static str] },
    BadAddress { key: &'static str, value: String, example: &'static str },
    BadName { what: &'static str, value: String },
    BadNumber { what: &'static str, value: String },
    BadText { what: &'static str },
    BadPattern { value: String, why: &'static str },
    Duplicate { what: &'static str, name: String, first_line: usize },
    DuplicateDn { dn: String, partition: String, first_line: usize },
    /// A reference to something not defined: `what` names the kind, `by` the referrer.
    Missing { what: &'static str, name: String, by: String },
    AmbiguousDn { dn: String, partitions: Vec<String> },
    PortClash { key: &'static str, other: &'static str, addr: SocketAddr },
    RtpClash { min: u16, max: u16, key: &'static str, port: u16 },
    Order { low_key: &'static str, low: i64, high_key: &'static str, high: i64 },
    MustBeEven { key: &'static str, value: i64 },
    NotForType { key: &'static str, device_type: &'static str },
    RequiredForType { key: &'static str, device_type: &'static str },
    Exclusive { a: &'static str, b: &'static str },
    Requires { key: &'static str, needs: &'static str },
    BoardPortMissing { port: String, board: String, available: Vec<String> },
    BoardPortKind { port: String, kind: &'static str, device_type: &'static str },
    PortTaken { port: String, device: String },
    WrongTarget { name: String, device_type: &'static str },
    Unreachable(Box<Unreachable>),
    NoForwardCss { line: String, forward: &'static str },
    BadSecret { name: String, why: String },
    /// `[peer] key`: neither "generate" nor 64 hex digits.
    BadPairKey,
    WeakPassword { name: String, why: &'static str },
    NotForPort { key: &'static str, kind: &'static str },
    /// A board key of an earlier model.
    ReplacedBoardKey { key: &'static str, by: &'static str },
    RequiredForPort { key: &'static str, kind: &'static str },
    GpioTaken { gpio: String, port: String },
    PcmTaken { pcm: String, port: String },
    UnknownBoard { name: String },
    /// `[media] moh_file` cannot be read or is not a WAV the media path can play.
    BadAudioFile { key: &'static str, path: String, detail: String },
    /// A directory key (`[media] prompts_dir`) that names no readable directory.
    BadDirectory { key: &'static str, path: String, detail: String },
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        match self {
            Read { detail } => write!(f, "cannot read: {detail}"),
            TooLarge { bytes, max } => write!(f, "file is {bytes} bytes, larger than the {max} allowed"),
            Syntax { detail } => write!(f, "TOML syntax error: {detail}"),
            UnknownKey { key, table, expected } => {
                write!(f, "unknown key `{key}` in {table}")?;
                if !expected.is_empty() {
                    write!(f, " (expected one of: {expected})")?;
                }
                Ok(())
            }
            MissingKey { key, table } => write!(f, "missing key `{key}` in {table}"),
            WrongType { found, expected } => write!(f, "wrong type: found {found}, expected {expected}"),
            BadValue { detail } => write!(f, "bad value: {detail}"),
            OutOfRange { key, value, min, max } => write!(f, "{key} = {value} is out of range {min}..={max}"),
            NotOneOf { key, value, allowed } => write!(f, "{key} = {value:?} is not one of: {}", allowed.join(", ")),
            BadAddress { key, value, example } => write!(f, "{key} = {value:?} is not an address like {example}"),
            BadName { what, value } => write!(
                f,
                "{what} {value:?} is not a valid name (1-64 characters: letters, digits, '-', '_', '.')"
            ),
            BadNumber { what, value } => {
                write!(f, "{what} {value:?} is not a directory number (digits, '*', '#', optional leading '+', 1-32)")
            }
            BadText { what } => write!(f, "{what} contains a control character or a double quote"),
            BadPattern { value, why } => write!(f, "route pattern {value:?}: {why}"),
            Duplicate { what, name, first_line } => {
                write!(f, "duplicate {what} {name:?} (first defined on line {first_line})")
            }
            DuplicateDn { dn, partition, first_line } => write!(
                f,
                "directory number {dn} is already in partition {partition:?} (first defined on line {first_line})"
            ),
            Missing { what, name, by } => write!(f, "{by} names {what} {name:?}, which is not defined"),
            AmbiguousDn { dn, partitions } => write!(
                f,
                "directory number {dn} exists in several partitions ({}); write it as \"{dn}@PARTITION\"",
                list(partitions)
            ),
            PortClash { key, other, addr } => write!(f, "{key} {addr} clashes with {other} on the same port"),
            RtpClash { min, max, key, port } => {
                write!(f, "RTP port range {min}-{max} contains {key} port {port}")
            }
            Order { low_key, low, high_key, high } => {
                write!(f, "{low_key} ({low}) must be less than {high_key} ({high})")
            }
            MustBeEven { key, value } => write!(f, "{key} = {value} must be even (RTP uses even ports, RTCP the odd one above)"),
            NotForType { key, device_type } => write!(f, "`{key}` does not apply to a device of type {device_type}"),
            RequiredForType { key, device_type } => write!(f, "a device of type {device_type} needs `{key}`"),
            Exclusive { a, b } => write!(f, "`{a}` and `{b}` exclude each other"),
            Requires { key, needs } => write!(f, "`{key}` needs `{needs}`"),
            BoardPortMissing { port, board, available } => {
                write!(f, "board {board:?} has no port {port:?} (it has: {})", list(available))
            }
            BoardPortKind { port, kind, device_type } => {
                write!(f, "board port {port:?} is an {kind} port; a device of type {device_type} cannot use it")
            }
            PortTaken { port, device } => write!(f, "board port {port:?} is already used by device {device:?}"),
            WrongTarget { name, device_type } => write!(
                f,
                "route pattern target device {name:?} is a {device_type}; only analog_fxo devices can be targets"
            ),
            Unreachable(u) => write!(
                f,
                "line {}: forward {} target {} matches no line or route pattern in calling search space {:?}",
                u.line, u.forward, u.number, u.css
            ),
            NoForwardCss { line, forward } => write!(
                f,
                "line {line}: forward {forward} needs a calling search space (set forward.css or put the line on a device with a css)"
            ),
            BadSecret { name, why } => write!(f, "app_user {name:?}: secret {why}"),
            BadPairKey => write!(f, "peer.key must be \"generate\" or 64 hex digits (32 bytes; the other box's generated key, copied from its secrets.toml)"),
            WeakPassword { name, why } => write!(f, "{name}: password refused: {why}"),
            NotForPort { key, kind } => write!(f, "`{key}` does not apply to an {kind} port"),
            ReplacedBoardKey { key, by } => write!(f, "`{key}` is no longer a board key: {by} (board/README.md)"),
            RequiredForPort { key, kind } => write!(f, "an {kind} port needs `{key}`"),
            GpioTaken { gpio, port } => write!(f, "GPIO line {gpio:?} is already used by port {port:?}"),
            PcmTaken { pcm, port } => write!(f, "ALSA PCM {pcm:?} is already used by port {port:?}"),
            UnknownBoard { name } => write!(f, "unknown board {name:?} (built in: sim, rpi4, rpi5; or set `file`)"),
            BadAudioFile { key, path, detail } => write!(f, "{key} {path:?}: {detail}"),
            BadDirectory { key, path, detail } => write!(f, "{key} {path:?}: {detail}"),
        }
    }
}

/// A forward target the forward's calling search space cannot reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub line: String,
    pub forward: &'static str,
    pub number: String,
    pub css: String,
}

/// An error still in byte offsets; turned into line:column against its text.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub span: Range<usize>,
    pub reason: Reason,
}

impl Located {
    pub(crate) fn new(span: Range<usize>, reason: Reason) -> Located {
        Located { span, reason }
    }
    pub(crate) fn into_error(self, text: &str, file: &str) -> ConfigError {
        let (line, column) = line_col(text, self.span.start);
        ConfigError { file: file.to_string(), line, column, reason: self.reason }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The `[table]` or `[[array]]` header in force at `offset`, for messages.
pub(crate) fn table_at(text: &str, offset: usize) -> String {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end += text[end..].find('\n').unwrap_or(text.len() - end);
    for l in text[..end].lines().rev() {
        let t = l.trim_start();
        if t.starts_with('[') {
            let close = if t.starts_with("[[") { "]]" } else { "]" };
            if let Some(i) = t.find(close) {
                return t[..i + close.len()].to_string();
            }
        }
    }
    "the top level".to_string()
}

fn between_backticks(s: &str) -> Option<&str> {
    let a = s.find('`')?;
    let rest = &s[a + 1..];
    let b = rest.find('`')?;
    Some(&rest[..b])
}

/// Turns a toml/serde error into a located reason of the right kind.
pub(crate) fn from_toml(e: &toml::de::Error, text: &str, parsing: bool) -> Located {
    let span = e.span().unwrap_or(0..0);
    let msg = e.message().trim_end().to_string();
    let first = msg.lines().next().unwrap_or("").to_string();
    let reason = if parsing {
        Reason::Syntax { detail: first }
    } else if let Some(rest) = first.strip_prefix("unknown field ") {
        let key = between_backticks(rest).unwrap_or(rest).to_string();
        let expected = rest
            .split_once("expected ")
            .map(|(_, e)| e.trim_start_matches("one of ").replace("` or `", "`, `").replace('`', ""))
            .unwrap_or_default();
        let expected = if expected.starts_with("no fields") { String::new() } else { expected };
        Reason::UnknownKey { key, table: table_at(text, span.start), expected }
    } else if let Some(rest) = first.strip_prefix("missing field ") {
        let key = between_backticks(rest).unwrap_or(rest).to_string();
        Reason::MissingKey { key, table: table_at(text, span.start) }
    } else if let Some(rest) = first.strip_prefix("invalid type: ") {
        match rest.split_once(", expected ") {
            Some((found, expected)) => Reason::WrongType { found: found.to_string(), expected: plain_type(expected) },
            None => Reason::BadValue { detail: first },
        }
    } else {
        Reason::BadValue { detail: first }
    };
    Located::new(span, reason)
}

/// Rust type names in serde messages, in words an operator knows.
fn plain_type(t: &str) -> String {
    match t {
        "i64" | "u8" | "u16" | "u32" | "u64" | "i32" => "an integer".into(),
        "bool" => "a boolean (true or false)".into(),
        "a sequence" => "an array".into(),
        "struct" => "a table".into(),
        other if other.starts_with("struct ") => "a table".into(),
        other => other.into(),
    }
}
