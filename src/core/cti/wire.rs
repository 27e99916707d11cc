//! The CTI wire protocol, version 1 (docs/cti-protocol.md): JSON text in, typed
//! [`Request`] out; typed [`Reply`] and [`Event`] in, JSON text out. Pure and
//! stateless: it owns no session, device or call state (that is the session layer's)
//! and touches no socket. Bad input is an error value, never a panic. The values it
//! carries are the engine's API vocabulary (`core/api.rs`): a request other than
//! login, logout and heartbeat is a [`Command`] ([`Request::into_command`]), and a
//! command's outcome is a reply ([`Reply::from_result`]).

pub use crate::core::api::{
    CallInfo, CallState, CollectEnd, DeviceInfo, EndReason, ErrorCode, Event, EventKind, Media, MediaInfo,
};
use crate::config::model::Codec;
use crate::core::api::{ApiError, Command, CommandResult};
use serde_json::{Map, Value};
use std::fmt;
use std::net::IpAddr;

/// The protocol version this server speaks.
pub const PROTOCOL: u32 = 1;
/// Longest string accepted in any request field, in bytes.
pub const MAX_STRING: usize = 256;
/// Longest message accepted (a line over TCP, a text message over WebSocket).
pub const MAX_MESSAGE: usize = crate::limits::CTI_MAX_LINE;

/// The greeting the server sends first on every connection.
/// In a pair it says the box's role, and on a standby which unit serves.
pub fn hello(pair: Option<&crate::core::PairView>) -> String {
    let mut o = Obj::new()
        .field("type", "hello")
        .field("server", "ctibox")
        .field("version", env!("CARGO_PKG_VERSION"))
        .field("protocol", PROTOCOL);
    if let Some(p) = pair {
        o = o.field("role", p.role);
        if let Some(a) = &p.active {
            o = o.field("active", a.as_str());
        }
    }
    o.finish()
}

/// The `id` a request carries, echoed in its reply: an integer or a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RequestId {
    Num(i64),
    Str(String),
}

impl RequestId {
    pub fn to_value(&self) -> Value {
        match self {
            RequestId::Num(n) => Value::from(*n),
            RequestId::Str(s) => Value::from(s.as_str()),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Num(n) => write!(f, "{n}"),
            RequestId::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for RequestId {
    fn from(n: i64) -> Self {
        RequestId::Num(n)
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId::Str(s.to_string())
    }
}

/// The wire name of a codec.
pub fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::Pcmu => "pcmu",
        Codec::Pcma => "pcma",
    }
}

/// Every request of protocol version 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Starts a session. `protocol`, when given, must be [`PROTOCOL`].
    Login { app: String, secret: String, protocol: Option<u32> },
    Logout,
    /// Keeps a silent session alive (any request does).
    Heartbeat,
    /// The devices this application may open.
    ListDevices,
    /// Takes control of a device; `media` is a CTI port's static media termination.
    Open { device: String, media: Option<Media> },
    Close { device: String },
    /// Answers an offered call; `media` is this call's (dynamic) termination, or with
    /// `box_media` (`"media": "box"`) the box terminates the call's media itself.
    Answer { call: String, media: Option<Media>, box_media: bool },
    /// Sets or changes a call's dynamic media termination.
    SetMedia { call: String, media: Media },
    /// Sends the call on to `to`, routed with the redirecting device's calling search space.
    Redirect { call: String, to: String },
    Hold { call: String },
    Unhold { call: String },
    Drop { call: String },
    /// Places a call from `device` to `to`.
    MakeCall { device: String, to: String, media: Option<Media> },
    /// Asks for `snapshot` events: for `device`, or for every device this application has open.
    Snapshot { device: Option<String> },
    /// The box plays `prompt` (a WAV file name in `[media] prompts_dir`, a tone name,
    /// or `moh`) to the far end of a call, on an RTP stream of its own.
    Play { call: String, prompt: String },
    /// The box collects DTMF digits from the far end of a call.
    CollectDigits { call: String, max: u32, terminator: Option<char>, inter_digit_timeout_ms: u32, first_digit_timeout_ms: Option<u32> },
    /// Stops what the box plays and collects on a call.
    StopMedia { call: String },
    /// The box sends DTMF digits (RFC 4733) to the far end of a call.
    SendDigits { call: String, digits: String },
}

/// Digits `collect_digits` may wait for, and the characters DTMF has.
pub const MAX_COLLECT_DIGITS: u32 = 32;
pub const DTMF_DIGITS: &str = "0123456789*#ABCD";
/// Bounds of the `collect_digits` timeouts, in milliseconds.
pub const MIN_DIGIT_TIMEOUT_MS: u32 = 100;
pub const MAX_DIGIT_TIMEOUT_MS: u32 = 600_000;

impl Request {
    /// Every request name, in the order of the docs.
    pub const NAMES: &'static [&'static str] = &[
        "login", "logout", "heartbeat", "list_devices", "open", "close", "answer", "set_media", "redirect", "hold",
        "unhold", "drop", "make_call", "snapshot", "play", "collect_digits", "stop_media", "send_digits",
    ];

    /// The `type` of this request on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Login { .. } => "login",
            Request::Logout => "logout",
            Request::Heartbeat => "heartbeat",
            Request::ListDevices => "list_devices",
            Request::Open { .. } => "open",
            Request::Close { .. } => "close",
            Request::Answer { .. } => "answer",
            Request::SetMedia { .. } => "set_media",
            Request::Redirect { .. } => "redirect",
            Request::Hold { .. } => "hold",
            Request::Unhold { .. } => "unhold",
            Request::Drop { .. } => "drop",
            Request::MakeCall { .. } => "make_call",
            Request::Snapshot { .. } => "snapshot",
            Request::Play { .. } => "play",
            Request::CollectDigits { .. } => "collect_digits",
            Request::StopMedia { .. } => "stop_media",
            Request::SendDigits { .. } => "send_digits",
        }
    }

    /// The engine command this request carries; `Err` gives back login, logout and
    /// heartbeat, which the CTI front end answers itself.
    pub fn into_command(self) -> Result<Command, Request> {
        Ok(match self {
            Request::Login { .. } | Request::Logout | Request::Heartbeat => return Err(self),
            Request::ListDevices => Command::ListDevices,
            Request::Open { device, media } => Command::Open { device, media },
            Request::Close { device } => Command::Close { device },
            Request::Answer { call, media, box_media } => Command::Answer { call, media, box_media },
            Request::SetMedia { call, media } => Command::SetMedia { call, media },
            Request::Redirect { call, to } => Command::Redirect { call, to },
            Request::Hold { call } => Command::Hold { call },
            Request::Unhold { call } => Command::Unhold { call },
            Request::Drop { call } => Command::Drop { call },
            Request::MakeCall { device, to, media } => Command::MakeCall { device, to, media, caller: None },
            Request::Snapshot { device } => Command::Snapshot { device },
            Request::Play { call, prompt } => Command::Play { call, prompt },
            Request::CollectDigits { call, max, terminator, inter_digit_timeout_ms, first_digit_timeout_ms } => {
                Command::CollectDigits { call, max, terminator, inter_digit_timeout_ms, first_digit_timeout_ms }
            }
            Request::StopMedia { call } => Command::StopMedia { call },
            Request::SendDigits { call, digits } => Command::SendDigits { call, digits },
        })
    }

    /// This request as one JSON message (what a client sends).
    pub fn to_json(&self, id: &RequestId) -> String {
        let o = Obj::new().field("type", self.name()).field("id", id.to_value());
        let media = |m: &Media| {
            Obj::new()
                .field("ip", m.ip.to_string())
                .field("port", m.port)
                .opt("codec", m.codec.map(|c| Value::from(codec_name(c))))
                .finish()
        };
        match self {
            Request::Login { app, secret, protocol } => {
                o.field("app", app.as_str()).field("secret", secret.as_str()).opt("protocol", protocol.map(Value::from))
            }
            Request::Logout | Request::Heartbeat | Request::ListDevices => o,
            Request::Open { device, media: m } => o.field("device", device.as_str()).opt_raw("media", m.as_ref().map(media)),
            Request::Close { device } => o.field("device", device.as_str()),
            Request::Answer { call, media: m, box_media } => {
                let m = if *box_media { Some("\"box\"".to_string()) } else { m.as_ref().map(media) };
                o.field("call", call.as_str()).opt_raw("media", m)
            }
            Request::SetMedia { call, media: m } => o
                .field("call", call.as_str())
                .field("ip", m.ip.to_string())
                .field("port", m.port)
                .opt("codec", m.codec.map(|c| Value::from(codec_name(c)))),
            Request::Redirect { call, to } => o.field("call", call.as_str()).field("to", to.as_str()),
            Request::Hold { call } | Request::Unhold { call } | Request::Drop { call } => o.field("call", call.as_str()),
            Request::MakeCall { device, to, media: m } => {
                o.field("device", device.as_str()).field("to", to.as_str()).opt_raw("media", m.as_ref().map(media))
            }
            Request::Snapshot { device } => o.opt("device", device.as_deref().map(Value::from)),
            Request::Play { call, prompt } => o.field("call", call.as_str()).field("prompt", prompt.as_str()),
            Request::CollectDigits { call, max, terminator, inter_digit_timeout_ms, first_digit_timeout_ms } => o
                .field("call", call.as_str())
                .field("max", *max)
                .opt("terminator", terminator.map(|c| Value::from(c.to_string())))
                .field("inter_digit_timeout_ms", *inter_digit_timeout_ms)
                .opt("first_digit_timeout_ms", first_digit_timeout_ms.map(Value::from)),
            Request::StopMedia { call } => o.field("call", call.as_str()),
            Request::SendDigits { call, digits } => o.field("call", call.as_str()).field("digits", digits.as_str()),
        }
        .finish()
    }
}

/// A request that could not be read: the id when it could be, the code, and a
/// sentence naming the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    pub id: Option<RequestId>,
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for WireError {}

/// The one reply every request gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Success, with the request's result fields (none for most requests).
    Ok { id: RequestId, result: Map<String, Value> },
    /// Failure. `id` is None only when the request's id could not be read.
    Error { id: Option<RequestId>, code: ErrorCode, message: String },
}

impl Reply {
    /// Success with no result fields.
    pub fn ok(id: RequestId) -> Reply {
        Reply::Ok { id, result: Map::new() }
    }

    /// Adds a result field to a success (no effect on an error).
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Reply {
        if let Reply::Ok { result, .. } = &mut self {
            result.insert(key.to_string(), value.into());
        }
        self
    }

    /// Failure with a precise sentence.
    pub fn error(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error { id, code, message: message.into() }
    }

    /// Failure with the code's general sentence.
    pub fn from_code(id: Option<RequestId>, code: ErrorCode) -> Reply {
        Reply::Error { id, code, message: code.to_string() }
    }

    /// This reply as one JSON message. Result fields named `type`, `id` or `ok` are
    /// reserved and left out.
    pub fn to_json(&self) -> String {
        match self {
            Reply::Ok { id, result } => {
                let mut o = Obj::new().field("type", "reply").field("id", id.to_value()).field("ok", true);
                for (k, v) in result.iter().filter(|(k, _)| !matches!(k.as_str(), "type" | "id" | "ok")) {
                    o = o.field(k, v.clone());
                }
                o.finish()
            }
            Reply::Error { id, code, message } => {
                let mut e = Map::new();
                e.insert("code".into(), code.as_str().into());
                e.insert("message".into(), message.as_str().into());
                Obj::new()
                    .field("type", "reply")
                    .field("id", id.as_ref().map_or(Value::Null, RequestId::to_value))
                    .field("ok", false)
                    .field("error", Value::Object(e))
                    .finish()
            }
        }
    }
}

impl Reply {
    /// The reply carrying a command's outcome.
    pub fn from_result(id: RequestId, result: Result<CommandResult, ApiError>) -> Reply {
        let r = match result {
            Err(e) => return Reply::Error { id: Some(id), code: e.code, message: e.message },
            Ok(r) => r,
        };
        let ok = Reply::ok(id);
        match r {
            CommandResult::Done => ok,
            CommandResult::Devices { devices } => ok.with("devices", devices.iter().map(DeviceInfo::to_value).collect::<Vec<_>>()),
            CommandResult::Opened { device, kind } => ok.with("device", device).with("kind", kind),
            CommandResult::Answered { media } => ok.with("media", media.to_value()),
            CommandResult::Placed { call } => ok.with("call", call),
            CommandResult::Calls { calls } => {
                let list: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        let mut v = c.call.to_value();
                        if let Some(o) = v.as_object_mut() {
                            o.insert("device".into(), c.device.clone().into());
                        }
                        v
                    })
                    .collect();
                ok.with("calls", list)
            }
        }
    }
}

impl From<WireError> for Reply {
    fn from(e: WireError) -> Reply {
        Reply::Error { id: e.id, code: e.code, message: e.message }
    }
}

impl DeviceInfo {
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "name": self.name, "kind": self.kind, "lines": self.lines, "open": self.open, "in_use": self.in_use,
        })
    }
}

impl MediaInfo {
    fn fields(&self, o: Obj) -> Obj {
        o.field("remote_ip", self.remote_ip.to_string())
            .field("remote_port", self.remote_port)
            .field("codec", codec_name(self.codec))
            .field("local_ip", self.local_ip.to_string())
            .field("local_port", self.local_port)
    }
    /// As JSON text, keys in wire order.
    pub fn to_json(&self) -> String {
        self.fields(Obj::new()).finish()
    }
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.to_json()).unwrap_or(Value::Null)
    }
}

impl CallInfo {
    /// As JSON text, keys in wire order.
    pub fn to_json(&self) -> String {
        Obj::new()
            .field("call", self.call.as_str())
            .field("state", self.state.as_str())
            .field("from", self.from.as_str())
            .opt("from_name", self.from_name.as_deref().map(Value::from))
            .field("to", self.to.as_str())
            .opt("redirected_from", self.redirected_from.as_deref().map(Value::from))
            .opt_raw("media", self.media.map(|m| m.to_json()))
            .finish()
    }
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.to_json()).unwrap_or(Value::Null)
    }
}

impl Event {
    /// This event as one JSON message; `seq` counts events on the connection from 1.
    pub fn to_json(&self, seq: u64) -> String {
        let o = Obj::new()
            .field("type", "event")
            .field("seq", seq)
            .field("event", self.kind.name())
            .field("device", self.device.as_str())
            .opt("call", self.call.as_deref().map(Value::from));
        match &self.kind {
            EventKind::CallOffered { from, from_name, to, redirected_from } => o
                .field("from", from.as_str())
                .opt("from_name", from_name.as_deref().map(Value::from))
                .field("to", to.as_str())
                .opt("redirected_from", redirected_from.as_deref().map(Value::from)),
            EventKind::CallRedirected { to } => o.field("to", to.as_str()),
            EventKind::CallEnded { reason } => o.field("reason", reason.as_str()),
            EventKind::MediaStarted(m) => m.fields(o),
            EventKind::Snapshot { calls } => {
                let list: Vec<String> = calls.iter().map(CallInfo::to_json).collect();
                o.raw("calls", &format!("[{}]", list.join(",")))
            }
            EventKind::MediaFailed { reason } => o.field("reason", reason.as_str()),
            EventKind::Digit { digit } => o.field("digit", digit.to_string()),
            EventKind::DigitsCollected { digits, reason } => o.field("digits", digits.as_str()).field("reason", reason.as_str()),
            _ => o,
        }
        .finish()
    }
}

/// Reads one request. Never panics; an unreadable request is a [`WireError`] carrying
/// the id whenever the id itself could be read.
pub fn parse_request(text: &str) -> Result<(RequestId, Request), WireError> {
    let fail = |code, message: String| WireError { id: None, code, message };
    if text.len() > MAX_MESSAGE {
        return Err(fail(ErrorCode::BadJson, format!("The message is {} bytes; the limit is {MAX_MESSAGE}.", text.len())));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| fail(ErrorCode::BadJson, format!("The message is not valid JSON: {e}.")))?;
    let Value::Object(obj) = value else {
        return Err(fail(ErrorCode::BadJson, format!("A request must be a JSON object, not {}.", kind_of(&value))));
    };
    let id = match obj.get("id") {
        None | Some(Value::Null) => return Err(fail(ErrorCode::MissingField, "Every request needs an \"id\" (a number or a string).".into())),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) => RequestId::Num(n),
            None => return Err(fail(ErrorCode::BadField, format!("Field \"id\" must be an integer or a string, found {n}."))),
        },
        Some(Value::String(s)) if s.len() <= MAX_STRING => RequestId::Str(s.clone()),
        Some(Value::String(s)) => {
            return Err(fail(ErrorCode::BadField, format!("Field \"id\" is {} bytes; the limit is {MAX_STRING}.", s.len())))
        }
        Some(v) => return Err(fail(ErrorCode::BadField, format!("Field \"id\" must be an integer or a string, found {}.", kind_of(v)))),
    };
    let ty = match obj.get("type") {
        None | Some(Value::Null) => {
            return Err(WireError { id: Some(id), code: ErrorCode::MissingField, message: "Every request needs a \"type\".".into() })
        }
        Some(Value::String(s)) => s.as_str(),
        Some(v) => {
            let message = format!("Field \"type\" must be a string naming the request, found {}.", kind_of(v));
            return Err(WireError { id: Some(id), code: ErrorCode::BadField, message });
        }
    };
    let f = Fields { obj: &obj, req: ty, id: &id };
    let request = match ty {
        "login" => {
            let protocol = f.opt_u32("protocol")?;
            if let Some(p) = protocol.filter(|&p| p != PROTOCOL) {
                let message = format!("This server speaks CTI protocol version {PROTOCOL}; the login asked for version {p}.");
                return Err(f.err(ErrorCode::UnsupportedProtocol, message));
            }
            Request::Login { app: f.string("app")?, secret: f.secret("secret")?, protocol }
        }
        "logout" => Request::Logout,
        "heartbeat" => Request::Heartbeat,
        "list_devices" => Request::ListDevices,
        "open" => Request::Open { device: f.string("device")?, media: f.opt_media("media")? },
        "close" => Request::Close { device: f.string("device")? },
        "answer" => {
            let call = f.string("call")?;
            match obj.get("media") {
                Some(Value::String(s)) if s == "box" => Request::Answer { call, media: None, box_media: true },
                Some(Value::String(s)) => {
                    let shown: String = s.chars().take(64).collect();
                    return Err(f.bad("media", "\"box\" or an object with ip, port and optional codec", &format!("{shown:?}")));
                }
                _ => Request::Answer { call, media: f.opt_media("media")?, box_media: false },
            }
        }
        "set_media" => Request::SetMedia { call: f.string("call")?, media: f.media_fields(&obj, "")? },
        "redirect" => Request::Redirect { call: f.string("call")?, to: f.string("to")? },
        "hold" => Request::Hold { call: f.string("call")? },
        "unhold" => Request::Unhold { call: f.string("call")? },
        "drop" => Request::Drop { call: f.string("call")? },
        "make_call" => Request::MakeCall { device: f.string("device")?, to: f.string("to")?, media: f.opt_media("media")? },
        "snapshot" => Request::Snapshot { device: f.opt_string("device")? },
        "play" => Request::Play { call: f.string("call")?, prompt: f.string("prompt")? },
        "collect_digits" => {
            let call = f.string("call")?;
            let max = f.opt_u32("max")?.ok_or_else(|| f.missing("max", "how many digits to collect"))?;
            if !(1..=MAX_COLLECT_DIGITS).contains(&max) {
                return Err(f.bad("max", &format!("an integer from 1 to {MAX_COLLECT_DIGITS}"), &max.to_string()));
            }
            let terminator = match f.opt_string("terminator")? {
                None => None,
                Some(t) => {
                    let mut cs = t.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) if DTMF_DIGITS.contains(c) => Some(c),
                        _ => return Err(f.bad("terminator", "one DTMF digit (0-9, *, #, A-D)", &format!("{:?}", t.chars().take(64).collect::<String>()))),
                    }
                }
            };
            let timeout = |key: &str| -> Result<Option<u32>, WireError> {
                match f.opt_u32(key)? {
                    Some(ms) if !(MIN_DIGIT_TIMEOUT_MS..=MAX_DIGIT_TIMEOUT_MS).contains(&ms) => {
                        Err(f.bad(key, &format!("an integer from {MIN_DIGIT_TIMEOUT_MS} to {MAX_DIGIT_TIMEOUT_MS} (milliseconds)"), &ms.to_string()))
                    }
                    v => Ok(v),
                }
            };
            let inter_digit_timeout_ms = timeout("inter_digit_timeout_ms")?.ok_or_else(|| f.missing("inter_digit_timeout_ms", "milliseconds to wait after each digit"))?;
            let first_digit_timeout_ms = timeout("first_digit_timeout_ms")?;
            Request::CollectDigits { call, max, terminator, inter_digit_timeout_ms, first_digit_timeout_ms }
        }
        "stop_media" => Request::StopMedia { call: f.string("call")? },
        "send_digits" => {
            let call = f.string("call")?;
            let digits = f.string("digits")?;
            if digits.chars().count() > MAX_COLLECT_DIGITS as usize || !digits.chars().all(|c| DTMF_DIGITS.contains(c)) {
                let shown: String = digits.chars().take(64).collect();
                return Err(f.bad("digits", &format!("1 to {MAX_COLLECT_DIGITS} DTMF digits (0-9, *, #, A-D)"), &format!("{shown:?}")));
            }
            Request::SendDigits { call, digits }
        }
        other => {
            let shown: String = other.chars().take(64).collect();
            let message = format!("Unknown request type {shown:?}; known types are {}.", Request::NAMES.join(", "));
            return Err(f.err(ErrorCode::UnknownRequest, message));
        }
    };
    Ok((id, request))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Field readers for one request; every error names the request and the field.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    req: &'a str,
    id: &'a RequestId,
}

impl Fields<'_> {
    fn err(&self, code: ErrorCode, message: String) -> WireError {
        WireError { id: Some(self.id.clone()), code, message }
    }

    fn missing(&self, field: &str, what: &str) -> WireError {
        self.err(ErrorCode::MissingField, format!("Request \"{}\" needs field \"{field}\" ({what}).", self.req))
    }

    fn bad(&self, field: &str, expected: &str, found: &str) -> WireError {
        self.err(ErrorCode::BadField, format!("Field \"{field}\" of \"{}\" must be {expected}, found {found}.", self.req))
    }

    /// A present, non-null field.
    fn get<'v>(&self, obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
        obj.get(key).filter(|v| !v.is_null())
    }

    fn check_str(&self, field: &str, s: &str, printable: bool) -> Result<(), WireError> {
        const WHAT: &str = "a non-empty string of at most 256 bytes without control characters";
        if s.is_empty() {
            return Err(self.bad(field, WHAT, "an empty string"));
        }
        if s.len() > MAX_STRING {
            return Err(self.bad(field, WHAT, &format!("{} bytes", s.len())));
        }
        if printable && s.chars().any(char::is_control) {
            return Err(self.bad(field, WHAT, "a control character"));
        }
        Ok(())
    }

    fn string_at(&self, obj: &Map<String, Value>, key: &str, field: &str, printable: bool) -> Result<Option<String>, WireError> {
        match self.get(obj, key) {
            None => Ok(None),
            Some(Value::String(s)) => self.check_str(field, s, printable).map(|_| Some(s.clone())),
            Some(v) => Err(self.bad(field, "a string", kind_of(v))),
        }
    }

    fn string(&self, key: &str) -> Result<String, WireError> {
        self.string_at(self.obj, key, key, true)?.ok_or_else(|| self.missing(key, "a string"))
    }

    /// Secrets may hold any character but must be bounded.
    fn secret(&self, key: &str) -> Result<String, WireError> {
        self.string_at(self.obj, key, key, false)?.ok_or_else(|| self.missing(key, "a string"))
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, WireError> {
        self.string_at(self.obj, key, key, true)
    }

    fn opt_u32(&self, key: &str) -> Result<Option<u32>, WireError> {
        match self.get(self.obj, key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Ok(Some(n)),
                None => Err(self.bad(key, "a non-negative integer", &n.to_string())),
            },
            Some(v) => Err(self.bad(key, "a non-negative integer", kind_of(v))),
        }
    }

    fn opt_media(&self, key: &str) -> Result<Option<Media>, WireError> {
        match self.get(self.obj, key) {
            None => Ok(None),
            Some(Value::Object(m)) => self.media_fields(m, &format!("{key}.")).map(Some),
            Some(v) => Err(self.bad(key, "an object with ip, port and optional codec", kind_of(v))),
        }
    }

    /// `ip`, `port` and optional `codec` from `obj`; `prefix` names them in errors.
    fn media_fields(&self, obj: &Map<String, Value>, prefix: &str) -> Result<Media, WireError> {
        let ip_field = format!("{prefix}ip");
        let ip = match self.get(obj, "ip") {
            None => return Err(self.missing(&ip_field, "the IP address RTP goes to")),
            Some(Value::String(s)) => match s.parse::<IpAddr>() {
                Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
                    return Err(self.bad(&ip_field, "a unicast IP address", &format!("{s:?}")))
                }
                Ok(ip) => ip,
                Err(_) => {
                    let shown: String = s.chars().take(64).collect();
                    return Err(self.bad(&ip_field, "an IP address like \"192.0.2.10\" or \"2001:db8::10\"", &format!("{shown:?}")));
                }
            },
            Some(v) => return Err(self.bad(&ip_field, "an IP address in a string", kind_of(v))),
        };
        let port_field = format!("{prefix}port");
        let port = match self.get(obj, "port") {
            None => return Err(self.missing(&port_field, "the UDP port RTP goes to")),
            Some(Value::Number(n)) => match n.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0) {
                Some(p) => p,
                None => return Err(self.bad(&port_field, "an integer from 1 to 65535", &n.to_string())),
            },
            Some(v) => return Err(self.bad(&port_field, "an integer from 1 to 65535", kind_of(v))),
        };
        let codec_field = format!("{prefix}codec");
        let codec = match self.get(obj, "codec") {
            None => None,
            Some(Value::String(s)) => match Codec::parse(s) {
                Some(c) => Some(c),
                None => {
                    let shown: String = s.chars().take(64).collect();
                    return Err(self.bad(&codec_field, "one of \"pcmu\", \"pcma\"", &format!("{shown:?}")));
                }
            },
            Some(v) => return Err(self.bad(&codec_field, "one of \"pcmu\", \"pcma\"", kind_of(v))),
        };
        Ok(Media { ip, port, codec })
    }
}

/// Writes a JSON object with its keys in the order given (serde_json's own map
/// sorts them), so `type` always comes first for a human reading the stream.
struct Obj(String);

impl Obj {
    fn new() -> Obj {
        Obj(String::from("{"))
    }

    fn field(self, key: &str, value: impl Into<Value>) -> Obj {
        self.raw(key, &value.into().to_string())
    }

    /// A field whose value is already JSON text.
    fn raw(mut self, key: &str, json: &str) -> Obj {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&Value::from(key).to_string());
        self.0.push(':');
        self.0.push_str(json);
        self
    }

    fn opt_raw(self, key: &str, json: Option<String>) -> Obj {
        match json {
            Some(j) => self.raw(key, &j),
            None => self,
        }
    }

    fn opt(self, key: &str, value: Option<Value>) -> Obj {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;

#[cfg(test)]
mod command_tests {
    //! Requests and commands: every request but login, logout and heartbeat carries the
    //! command of the same name, field for field.
    use super::*;

    #[test]
    fn every_session_request_is_the_command_of_its_name() {
        let m = Media { ip: "192.0.2.1".parse().unwrap(), port: 4000, codec: Some(Codec::Pcma) };
        let call = || "c1".to_string();
        let requests = [
            Request::ListDevices,
            Request::Open { device: "rp".into(), media: Some(m) },
            Request::Close { device: "rp".into() },
            Request::Answer { call: call(), media: None, box_media: true },
            Request::SetMedia { call: call(), media: m },
            Request::Redirect { call: call(), to: "2000".into() },
            Request::Hold { call: call() },
            Request::Unhold { call: call() },
            Request::Drop { call: call() },
            Request::MakeCall { device: "port".into(), to: "1001".into(), media: None },
            Request::Snapshot { device: None },
            Request::Play { call: call(), prompt: "busy".into() },
            Request::CollectDigits { call: call(), max: 4, terminator: Some('#'), inter_digit_timeout_ms: 3000, first_digit_timeout_ms: None },
            Request::StopMedia { call: call() },
            Request::SendDigits { call: call(), digits: "12#".into() },
        ];
        let mut names: Vec<&str> = Vec::new();
        let mut compared = 0;
        for r in requests {
            let json = r.to_json(&RequestId::Num(1));
            let name = r.name();
            let c = r.into_command().unwrap_or_else(|r| panic!("{r:?} is a command"));
            assert_eq!(c.name(), name);
            // The command serialises with the request's fields under their wire names.
            let mut req: Value = serde_json::from_str(&json).unwrap();
            // Externally tagged: `"list_devices"`, or `{"answer": {fields}}`.
            let cmd = serde_json::to_value(&c).unwrap();
            let cmd = cmd.get(name).cloned().unwrap_or_else(|| {
                assert_eq!(cmd, Value::from(name), "a command without fields is its name");
                Value::Object(Map::new())
            });
            let o = req.as_object_mut().unwrap();
            o.remove("id");
            o.remove("type");
            for (k, v) in o.iter() {
                // (media and terminator are typed values; set_media's media is flat on the wire)
                if name != "set_media" && k != "media" && k != "terminator" {
                    assert_eq!(cmd.get(k), Some(v), "{name}: {k}");
                    compared += 1;
                }
            }
            names.push(name);
        }
        assert_eq!(compared, 18, "every plain field of every request is compared");
        let session: Vec<&str> = Request::NAMES.iter().copied().filter(|n| !matches!(*n, "login" | "logout" | "heartbeat")).collect();
        names.sort_unstable();
        let mut want = session.clone();
        want.sort_unstable();
        assert_eq!(names, want, "every session request is covered");
        for r in [Request::Logout, Request::Heartbeat, Request::Login { app: "a".into(), secret: "s".into(), protocol: None }] {
            assert!(r.clone().into_command().is_err(), "{r:?} stays with the front end");
        }
    }
}

