//! The engine's API: the one typed vocabulary every client of the engine speaks. An
//! authenticated client (a CTI application today; the control socket, the console,
//! built-in applications and the AMI facade later) sends [`Command`]s and receives a
//! [`CommandResult`] or an [`ApiError`] for each, and [`Event`]s about the devices it
//! has open. Transport-neutral: no JSON, no connection, no login (authenticating is
//! the front end's job; see `core/cti/server.rs`). Only plain values (and the
//! configuration's value types) live here; `core/api_session.rs` carries commands out.
//! `core/cti/wire.rs` is the JSON codec of this vocabulary (docs/cti-protocol.md).

use crate::config::model::Codec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

/// A client of the engine, numbered by the engine when it connects (not a socket:
/// one front end may carry many clients, and an in-process client has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(pub u64);

/// Which devices a client may open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Those of the `[[app_user]]` named by the client's principal, as the running
    /// configuration says at each request (a reload changes them).
    AppUser,
    /// A fixed set (built-in applications configured with their devices).
    Devices(BTreeSet<String>),
}

/// What an authenticated client may ask of the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// The devices this client may open.
    ListDevices,
    /// Takes control of a device; `media` is a CTI port's static media termination.
    Open { device: String, media: Option<Media> },
    Close { device: String },
    /// `snapshot` events (and the calls in the result): for `device`, or for every
    /// device this client has open.
    Snapshot { device: Option<String> },
    /// Answers an offered call; `media` is this call's (dynamic) termination, or with
    /// `box_media` the box terminates the call's media itself.
    Answer { call: String, media: Option<Media>, box_media: bool },
    /// Sets or changes a call's dynamic media termination.
    SetMedia { call: String, media: Media },
    /// Sends the call on to `to`, routed with the redirecting device's calling search space.
    Redirect { call: String, to: String },
    Hold { call: String },
    Unhold { call: String },
    Drop { call: String },
    /// Places a call from `device` to `to`. `caller` is for in-process clients that
    /// place a call for someone outside the box (an FXO port: the PSTN caller's
    /// number and name); only an analog_fxo device's calls take it, and the CTI wire
    /// never sets it.
    MakeCall {
        device: String,
        to: String,
        media: Option<Media>,
        #[serde(default)]
        caller: Option<Caller>,
    },
    /// The box plays `prompt` (a WAV file in `[media] prompts_dir`, a tone name, or
    /// `moh`) to the far end of a call.
    Play { call: String, prompt: String },
    /// The box collects DTMF digits from the far end of a call.
    CollectDigits { call: String, max: u32, terminator: Option<char>, inter_digit_timeout_ms: u32, first_digit_timeout_ms: Option<u32> },
    /// Stops what the box plays and collects on a call.
    StopMedia { call: String },
    /// The box sends DTMF digits (RFC 4733) to the far end of a call.
    SendDigits { call: String, digits: String },
}

/// What a command that succeeded returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandResult {
    /// Nothing to return (close, set_media, redirect, hold, unhold, drop, the media commands).
    Done,
    /// `list_devices`.
    Devices { devices: Vec<DeviceInfo> },
    /// `open`: the device and its configured type.
    Opened { device: String, kind: String },
    /// `answer`: where the call's RTP flows.
    Answered { media: MediaInfo },
    /// `make_call`: the new call.
    Placed { call: String },
    /// `snapshot`: every live call at the devices asked for, with its device.
    Calls { calls: Vec<DeviceCall> },
}

/// One call of a snapshot and the device it is at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCall {
    pub device: String,
    pub call: CallInfo,
}

/// A command refused: the code clients match on and a sentence naming the problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }
}

impl From<(ErrorCode, String)> for ApiError {
    fn from((code, message): (ErrorCode, String)) -> ApiError {
        ApiError { code, message }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl Command {
    /// The command's name (the CTI request `type` that carries it).
    pub fn name(&self) -> &'static str {
        match self {
            Command::ListDevices => "list_devices",
            Command::Open { .. } => "open",
            Command::Close { .. } => "close",
            Command::Snapshot { .. } => "snapshot",
            Command::Answer { .. } => "answer",
            Command::SetMedia { .. } => "set_media",
            Command::Redirect { .. } => "redirect",
            Command::Hold { .. } => "hold",
            Command::Unhold { .. } => "unhold",
            Command::Drop { .. } => "drop",
            Command::MakeCall { .. } => "make_call",
            Command::Play { .. } => "play",
            Command::CollectDigits { .. } => "collect_digits",
            Command::StopMedia { .. } => "stop_media",
            Command::SendDigits { .. } => "send_digits",
        }
    }
}

/// Where an application terminates media: RTP goes to `ip:port` in `codec` (when
/// none is named, the first of the box's `[media] codecs` the far end accepts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    pub ip: IpAddr,
    pub port: u16,
    pub codec: Option<Codec>,
}

/// The calling party of a call placed for someone outside the box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// Digits (and `+`), or `anonymous` (withheld) or `unavailable`.
    pub number: String,
    pub name: Option<String>,
}

/// Why a request failed. Append-only: applications match on [`ErrorCode::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    MissingField,
    BadField,
    UnknownRequest,
    NotLoggedIn,
    AlreadyLoggedIn,
    AuthFailed,
    UnknownDevice,
    DeviceNotAllowed,
    DeviceInUse,
    DeviceNotOpen,
    UnknownCall,
    InvalidState,
    MediaRequired,
    Capacity,
    UnsupportedProtocol,
    Throttled,
    /// This box is the standby of its pair: the application goes to the active one.
    NotActive,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::BadJson,
        ErrorCode::MissingField,
        ErrorCode::BadField,
        ErrorCode::UnknownRequest,
        ErrorCode::NotLoggedIn,
        ErrorCode::AlreadyLoggedIn,
        ErrorCode::AuthFailed,
        ErrorCode::UnknownDevice,
        ErrorCode::DeviceNotAllowed,
        ErrorCode::DeviceInUse,
        ErrorCode::DeviceNotOpen,
        ErrorCode::UnknownCall,
        ErrorCode::InvalidState,
        ErrorCode::MediaRequired,
        ErrorCode::Capacity,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::Throttled,
        ErrorCode::NotActive,
        ErrorCode::Internal,
    ];

    /// The `code` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::BadField => "bad_field",
            ErrorCode::UnknownRequest => "unknown_request",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::AlreadyLoggedIn => "already_logged_in",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::UnknownDevice => "unknown_device",
            ErrorCode::DeviceNotAllowed => "device_not_allowed",
            ErrorCode::DeviceInUse => "device_in_use",
            ErrorCode::DeviceNotOpen => "device_not_open",
            ErrorCode::UnknownCall => "unknown_call",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::MediaRequired => "media_required",
            ErrorCode::Capacity => "capacity",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::Throttled => "throttled",
            ErrorCode::NotActive => "not_active",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code named `s` on the wire.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The general sentence for a code; replies carry a more precise one when they can.
impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorCode::BadJson => "The message is not a JSON object.",
            ErrorCode::MissingField => "A field the request needs is missing.",
            ErrorCode::BadField => "A field has the wrong type or value.",
            ErrorCode::UnknownRequest => "This server knows no request of that type.",
            ErrorCode::NotLoggedIn => "Log in first: this request needs a session.",
            ErrorCode::AlreadyLoggedIn => "This connection is already logged in.",
            ErrorCode::AuthFailed => "The application name or secret is wrong.",
            ErrorCode::UnknownDevice => "No device has that name.",
            ErrorCode::DeviceNotAllowed => "This application may not control that device.",
            ErrorCode::DeviceInUse => "Another application has that device open.",
            ErrorCode::DeviceNotOpen => "This application has not opened that device.",
            ErrorCode::UnknownCall => "No call with that id is at a device this application has open.",
            ErrorCode::InvalidState => "The call or device is not in a state that allows this request.",
            ErrorCode::MediaRequired => "This call has no media termination yet: send set_media or answer with media.",
            ErrorCode::Capacity => "A capacity limit was reached; try again later.",
            ErrorCode::UnsupportedProtocol => "This server speaks CTI protocol version 1 only.",
            ErrorCode::Throttled => "Too many failed logins from this address: wait, then try again.",
            ErrorCode::NotActive => "This box is the standby of its pair: use the active one.",
            ErrorCode::Internal => "The server failed to handle the request.",
        })
    }
}

/// A device as `list_devices` and `login` describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    /// The configuration's device type: `cti_route_point`, `cti_port`, `sip_phone`, ...
    pub kind: String,
    /// Its lines as `DN@partition`.
    pub lines: Vec<String>,
    /// This application has it open.
    pub open: bool,
    /// Another application has it open.
    pub in_use: bool,
}

/// Where a call's RTP flows, seen from the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaInfo {
    /// The far end: where the application sends RTP.
    pub remote_ip: IpAddr,
    pub remote_port: u16,
    pub codec: Codec,
    /// The application's termination: where RTP from the far end arrives.
    pub local_ip: IpAddr,
    pub local_port: u16,
}

/// A call's state in a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Arrived at the device, not answered.
    Offered,
    /// Placed by `make_call`, the far end not yet ringing.
    Dialing,
    /// Placed by `make_call`, the far end ringing.
    Ringing,
    Connected,
    Held,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Offered => "offered",
            CallState::Dialing => "dialing",
            CallState::Ringing => "ringing",
            CallState::Connected => "connected",
            CallState::Held => "held",
        }
    }
}

/// One live call in a `snapshot` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    pub call: String,
    pub state: CallState,
    pub from: String,
    pub from_name: Option<String>,
    pub to: String,
    pub redirected_from: Option<String>,
    pub media: Option<MediaInfo>,
}

/// Why a call ended at a device. Append-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The far end hung up.
    Hangup,
    /// This application dropped it.
    Dropped,
    /// It was redirected away from the device.
    Redirected,
    /// The far end was busy (a `make_call`).
    Busy,
    /// Nobody answered in time.
    NoAnswer,
    /// The destination refused it or does not exist.
    Rejected,
    /// The application failed; the call went to Call Forward On Failure.
    ForwardedOnFailure,
    /// A network or media failure.
    Failed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Hangup => "hangup",
            EndReason::Dropped => "dropped",
            EndReason::Redirected => "redirected",
            EndReason::Busy => "busy",
            EndReason::NoAnswer => "no_answer",
            EndReason::Rejected => "rejected",
            EndReason::ForwardedOnFailure => "forwarded_on_failure",
            EndReason::Failed => "failed",
        }
    }
}

/// What an event says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    DeviceInService,
    DeviceOutOfService,
    CallOffered { from: String, from_name: Option<String>, to: String, redirected_from: Option<String> },
    CallRinging,
    CallAnswered,
    CallConnected,
    CallHeld,
    CallResumed,
    CallRedirected { to: String },
    CallEnded { reason: EndReason },
    MediaStarted(MediaInfo),
    MediaStopped,
    Snapshot { calls: Vec<CallInfo> },
    /// A prompt or tone the box played (`play`) ended by itself.
    PlayDone,
    /// The box's media on the call failed (the stream could not open, the prompt is
    /// unreadable, the far end refused to send its media to the box).
    MediaFailed { reason: String },
    /// The far end pressed a DTMF digit on a call whose media the box terminates.
    Digit { digit: char },
    /// `collect_digits` ended: the digits, and why it ended.
    DigitsCollected { digits: String, reason: CollectEnd },
}

/// Why a `collect_digits` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectEnd {
    /// `max` digits arrived.
    Max,
    /// The terminator arrived (it is not among the digits).
    Terminator,
    /// The first-digit or inter-digit timeout ran out.
    Timeout,
}

impl CollectEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectEnd::Max => "max",
            CollectEnd::Terminator => "terminator",
            CollectEnd::Timeout => "timeout",
        }
    }
}

impl EventKind {
    /// The `event` name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::DeviceInService => "device_in_service",
            EventKind::DeviceOutOfService => "device_out_of_service",
            EventKind::CallOffered { .. } => "call_offered",
            EventKind::CallRinging => "call_ringing",
            EventKind::CallAnswered => "call_answered",
            EventKind::CallConnected => "call_connected",
            EventKind::CallHeld => "call_held",
            EventKind::CallResumed => "call_resumed",
            EventKind::CallRedirected { .. } => "call_redirected",
            EventKind::CallEnded { .. } => "call_ended",
            EventKind::MediaStarted(_) => "media_started",
            EventKind::MediaStopped => "media_stopped",
            EventKind::Snapshot { .. } => "snapshot",
            EventKind::PlayDone => "play_done",
            EventKind::MediaFailed { .. } => "media_failed",
            EventKind::Digit { .. } => "digit",
            EventKind::DigitsCollected { .. } => "digits_collected",
        }
    }
}

/// Something that happened at a device this application has open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub device: String,
    /// The call it concerns, if any.
    pub call: Option<String>,
    pub kind: EventKind,
}

impl Event {
    pub fn new(device: impl Into<String>, call: Option<&str>, kind: EventKind) -> Event {
        Event { device: device.into(), call: call.map(str::to_string), kind }
    }
}

#[cfg(test)]
mod tests {
    //! The vocabulary is plain serde data: it survives the compact binary encoding the
    //! engine's snapshots use, and JSON, unchanged.
    use super::*;

    #[test]
    fn commands_results_and_events_round_trip_through_postcard_and_json() {
        let media = MediaInfo { remote_ip: "192.0.2.1".parse().unwrap(), remote_port: 4000, codec: Codec::Pcmu, local_ip: "192.0.2.2".parse().unwrap(), local_port: 5000 };
        let call = CallInfo { call: "c1".into(), state: CallState::Held, from: "1001".into(), from_name: Some("A".into()), to: "2000".into(), redirected_from: None, media: Some(media) };
        let events = vec![
            Event::new("rp", Some("c1"), EventKind::CallOffered { from: "1001".into(), from_name: None, to: "2000".into(), redirected_from: Some("2001".into()) }),
            Event::new("rp", Some("c1"), EventKind::MediaStarted(media)),
            Event::new("rp", None, EventKind::Snapshot { calls: vec![call.clone()] }),
            Event::new("rp", Some("c1"), EventKind::DigitsCollected { digits: "12".into(), reason: CollectEnd::Terminator }),
            Event::new("rp", Some("c1"), EventKind::CallEnded { reason: EndReason::ForwardedOnFailure }),
        ];
        let commands = vec![
            Command::Answer { call: "c1".into(), media: Some(Media { ip: "192.0.2.3".parse().unwrap(), port: 6000, codec: None }), box_media: false },
            Command::CollectDigits { call: "c1".into(), max: 4, terminator: Some('#'), inter_digit_timeout_ms: 3000, first_digit_timeout_ms: Some(5000) },
            Command::Snapshot { device: None },
        ];
        let results: Vec<Result<CommandResult, ApiError>> = vec![
            Ok(CommandResult::Calls { calls: vec![DeviceCall { device: "rp".into(), call }] }),
            Ok(CommandResult::Done),
            Err(ApiError::new(ErrorCode::UnknownCall, "no call \"c9\"")),
        ];
        let bin = postcard::to_allocvec(&(&events, &commands, &results)).unwrap();
        let back: (Vec<Event>, Vec<Command>, Vec<Result<CommandResult, ApiError>>) = postcard::from_bytes(&bin).unwrap();
        assert_eq!(back, (events.clone(), commands.clone(), results.clone()));
        let json = serde_json::to_string(&(&events, &commands, &results)).unwrap();
        let back: (Vec<Event>, Vec<Command>, Vec<Result<CommandResult, ApiError>>) = serde_json::from_str(&json).unwrap();
        assert_eq!(back, (events, commands, results));
        assert!(json.contains("\"call_offered\"") && json.contains("\"forwarded_on_failure\"") && json.contains("\"collect_digits\""), "{json}");
    }
}
