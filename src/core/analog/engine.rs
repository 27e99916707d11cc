//! The analog ports inside the engine: each FXS port of the board that an
//! `analog_fxs` device names gets its hook switch (`hook`), its ringer (`ring`) and its
//! line (`fxs`), all on the engine's clock. The ports reach calls as one built-in
//! client of the typed API (`core::api`), the same vocabulary CTI applications speak:
//! the client has every port's device open, so calls to a port's line are offered to
//! it, and it answers, drops and makes calls like an application with its own media.
//! The media is the port's: the shell joins the port's sound device to the call's RTP
//! (`AnalogOutput::Connect`); the engine only commands.
//!
//! The shell reports GPIO edges and detected digits (`AnalogInput`) and carries out
//! `AnalogOutput`s: GPIO levels, what the port plays, caller ID, the audio bridge.

use super::fxo::{FxoLine, FxoOut, FxoSettings, Supervision};
use super::fxs::{Cid, Dial, Ended, FxsLine, FxsOut, FxsSettings, Sound};
use super::hook::{Hook, HookEvent, HookSettings};
use super::ring::{RingOutput, RingSettings, Ringer};
use super::ring_detect::{RingDetect, RingDetectSettings, RingEvent, RingInput};
use crate::board::{PortKind, RingSignal, Signals};
use crate::core::media::tone::ToneKind;
use crate::codec::callerid::{self, CallerId, Field, Fsk, Stamp};
use crate::config::{Codec, Config, Country, DeviceKind};
use crate::core::api::{Caller, ClientId, Command, CommandResult, EndReason, Event, EventKind, Grant, Media};
use crate::core::{Engine, Output, Time};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// The principal the analog ports' client acts as (logs, device owners).
pub const PRINCIPAL: &str = "analog-ports";

/// A GPIO input of a port, by its board-file key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InSignal {
    /// FXS: SHK (off hook, and ring-trip).
    Hook,
    /// FXO: the ring detector.
    RingDetect,
    /// FXO: loop current flows (its loss while seized is a disconnect).
    LoopCurrent,
    /// FXO: the line's polarity (a reversal while seized is a disconnect).
    Polarity,
}

/// A GPIO output of a port, by its board-file key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutSignal {
    RingMode,
    FwdRev,
    /// FXO: the off-hook relay.
    Seize,
}

/// What the shell tells the engine about a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnalogInput {
    /// A GPIO input changed to `active` at `at` (the edge's own time, a little before
    /// the input reaches the engine).
    Edge { port: String, signal: InSignal, active: bool, at: Time },
    /// A DTMF digit detected in the port's capture.
    Digit { port: String, digit: char },
    /// The shell drives the port now (its GPIO lines and sound device are open): its
    /// device goes into service. Until then calls to it are not offered (480, or the
    /// line's Call Forward No Answer).
    Up { port: String },
    /// The port's hardware is gone (a GPIO chip or sound device failed): its call
    /// ends and its device goes out of service until `Up` again.
    Down { port: String, reason: String },
    /// FXO: caller ID decoded from the line (FSK either flavour, or DTMF CLIP).
    CallerId { port: String, number: Field, name: Field },
    /// FXO: a call-progress tone heard on the line (busy or reorder ends a call).
    ToneHeard { port: String, tone: ToneKind },
}

/// How caller ID goes onto the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidSignal {
    /// An FSK message (framed, checksum included), with the on-hook preamble.
    Fsk { fsk: Fsk, message: Vec<u8> },
    /// An FSK message sent off hook, into a call (call waiting, the set having
    /// acknowledged the alert): the call-waiting preamble (`Preamble::OFF_HOOK`: no
    /// seizure bits, 80 mark bits), the far end's audio muted meanwhile.
    FskCallWaiting { fsk: Fsk, message: Vec<u8> },
    /// DTMF CLIP: the digits to play ('A', the number, 'C').
    Dtmf { digits: String },
}

/// What the engine asks of a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnalogOutput {
    Gpio { port: String, signal: OutSignal, active: bool },
    /// What the port plays toward the line while not joined to a call.
    Play { port: String, sound: Sound },
    CallerId { port: String, signal: CidSignal },
    /// Join the port's audio to RTP: receive on `local_port` (of the media address),
    /// send to `remote`, in `codec`.
    Connect { port: String, local_port: u16, remote: SocketAddr, codec: Codec },
    /// Leave the call's RTP (the port's local port closes).
    Disconnect { port: String },
    /// FXO: send `digits` on the line in DTMF, each 100 ms of tone then 100 ms of
    /// pause (`fxo::DTMF_DIGIT`), at once (the line is seized already).
    Dial { port: String, digits: String },
    /// FXS: the call-waiting tone, mixed into what the port plays toward the
    /// subscriber while it is joined to a call: the country's call-waiting tone for
    /// 300 ms (the far end's audio muted meanwhile); with `cas`, the CPE alerting
    /// signal (2130 + 2750 Hz, 80 ms) right after it, to which a caller ID set
    /// answers with DTMF A or D (reported as `Digit`).
    CallWaitingTone { port: String, cas: bool },
}

/// Caller ID as a country sends it: the FSK flavour (or DTMF) and whether it goes
/// before the first ring. Bell 202 MDMF after the first ring in North America; ETSI
/// V.23 elsewhere (before the first ring in the UK, as BT does, after it in the rest);
/// DTMF CLIP before the first ring in the Netherlands.
pub fn cid_plan(c: Country) -> (Option<Fsk>, bool) {
    match c {
        Country::Us | Country::Ca => (Some(Fsk::Bell202), false),
        Country::Uk => (Some(Fsk::V23), true),
        Country::Nl => (None, true),
        Country::De | Country::Fr | Country::It | Country::Es | Country::Au => (Some(Fsk::V23), false),
    }
}

/// One FXS port and the device on it.
#[derive(Debug)]
struct Port {
    device: String,
    country: Country,
    hook: Hook,
    ringer: Ringer,
    line: FxsLine,
    media: PortMedia,
    /// The media of the line's second call (held, or waiting: nothing booked yet).
    other: PortMedia,
    call_waiting: bool,
    /// In service: the shell said `Up`, and the device is open.
    up: bool,
}

/// One FXO port (a PSTN line) and the device on it.
#[derive(Debug)]
struct FxoPort {
    device: String,
    /// The number its inbound calls go to.
    inbound: String,
    input: RingInput,
    /// Answer supervision on outbound calls: by the line's polarity, or the delay (s).
    polarity: Answering,
    detect: RingDetect,
    line: FxoLine,
    media: PortMedia,
    up: bool,
}

/// A port's side of its call's media: the RTP port booked for it, the far end once
/// the media flows, and whether the shell has joined the port to it.
#[derive(Debug, Default)]
struct PortMedia {
    rtp_port: Option<u16>,
    far: Option<(SocketAddr, Codec)>,
    joined: bool,
}

/// The engine's analog ports.
#[derive(Debug, Default)]
pub struct AnalogPorts {
    client: Option<ClientId>,
    /// By board port name.
    ports: BTreeMap<String, Port>,
    fxo: BTreeMap<String, FxoPort>,
    /// Digits and edges for ports the engine does not drive (counted).
    pub unknown_port_inputs: u64,
    pub ignored: u64,
}

impl AnalogPorts {
    pub fn next_timeout(&self) -> Option<Time> {
        let fxs = self.ports.values().flat_map(|p| [p.hook.poll_timeout(), p.ringer.poll_timeout(), p.line.poll_timeout()]);
        let fxo = self.fxo.values().flat_map(|p| [p.detect.poll_timeout(), p.line.poll_timeout()]);
        fxs.chain(fxo).flatten().min()
    }

    fn port_of_device(&self, device: &str) -> Option<String> {
        self.ports.iter().find(|(_, p)| p.device == device).map(|(n, _)| n.clone())
    }

    fn fxo_of_device(&self, device: &str) -> Option<String> {
        self.fxo.iter().find(|(_, p)| p.device == device).map(|(n, _)| n.clone())
    }

    /// Port name, device and line state of each port, and whether an FXS port is off
    /// hook or an FXO line seized (for status).
    pub fn states(&self) -> Vec<(String, String, &'static str, bool)> {
        let fxs = self.ports.iter().map(|(n, p)| (n.clone(), p.device.clone(), p.line.state_name(), p.hook.off_hook()));
        let fxo = self.fxo.iter().map(|(n, p)| (n.clone(), p.device.clone(), p.line.state_name(), p.line.seized()));
        fxs.chain(fxo).collect()
    }
}

/// The FXS ports the configuration drives: (port, device, (country, call waiting)),
/// for devices whose port is an FXS port of the board.
fn fxs_devices(cfg: &Config) -> Vec<(String, String, (Country, bool))> {
    cfg.devices
        .iter()
        .filter_map(|d| match &d.kind {
            DeviceKind::AnalogFxs { port, call_waiting } if cfg.board.def.port(port).is_some_and(|p| p.kind == PortKind::Fxs) => {
                let country = cfg.pool(&d.pool).map_or(cfg.system.country, |p| p.country);
                Some((port.clone(), d.name.clone(), (country, *call_waiting)))
            }
            _ => None,
        })
        .collect()
}

/// The FXO ports the configuration drives: (port, device, inbound number, ring input
/// and answer supervision: by polarity (the device wants it and the port has the
/// input), else the delay after the last digit in seconds).
/// Answer supervision of a call out of an FXO line: by polarity, else the delay (s).
type Answering = (bool, u32);

fn fxo_devices(cfg: &Config) -> Vec<(String, String, String, (RingInput, Answering))> {
    cfg.devices
        .iter()
        .filter_map(|d| match &d.kind {
            DeviceKind::AnalogFxo { port, inbound, polarity_answer, answer_delay_s } => {
                let bp = cfg.board.def.port(port).filter(|p| p.kind == PortKind::Fxo)?;
                let input = match &bp.signals {
                    Signals::Fxo { ring_signal: RingSignal::Level, .. } => RingInput::Level,
                    _ => RingInput::Pulses,
                };
                let polarity = *polarity_answer && matches!(&bp.signals, Signals::Fxo { polarity: Some(_), .. });
                let input = (input, (polarity, *answer_delay_s));
                Some((port.clone(), d.name.clone(), inbound.dn.clone(), input))
            }
            _ => None,
        })
        .collect()
}

/// An FXS line's settings: caller ID before or after the first ring, call waiting,
/// and off-hook caller ID where the country sends FSK.
fn fxs_settings(country: Country, call_waiting: bool) -> FxsSettings {
    let (fsk, cid_first) = cid_plan(country);
    FxsSettings { cid_first, call_waiting, cw_cid: fsk.is_some(), ..FxsSettings::default() }
}

/// An FXO line's settings: answer supervision by polarity, or the delay.
fn fxo_settings((polarity, delay_s): Answering) -> FxoSettings {
    FxoSettings { answer_on_polarity: polarity, answer_delay: std::time::Duration::from_secs(u64::from(delay_s)), ..FxoSettings::default() }
}

/// The calling party of an inbound PSTN call, from its caller ID.
fn caller_of(cid: Option<&Cid>) -> Caller {
    let number = match cid.map(|c| &c.number) {
        Some(Field::Value(n)) => {
            let n: String = n.chars().filter(|c| c.is_ascii_digit() || *c == '+').take(callerid::MAX_NUMBER).collect();
            if n.is_empty() {
                "unavailable".to_string()
            } else {
                n
            }
        }
        Some(Field::Private) => "anonymous".to_string(),
        _ => "unavailable".to_string(),
    };
    let name = match cid.map(|c| &c.name) {
        Some(Field::Value(n)) if !n.trim().is_empty() => Some(n.chars().filter(|c| !c.is_control() && *c != '"').collect()),
        _ => None,
    };
    Caller { number, name }
}

/// What a dialled prefix is in calling search space `css`: complete when a line or
/// route pattern matches it and nothing longer could; open while something longer
/// could match; never when nothing can.
pub fn digit_map(cfg: &Config, css: Option<&str>, digits: &str) -> Dial {
    let Some(css) = css.and_then(|c| cfg.css(c)) else { return Dial::Never };
    let exact = crate::core::call::dialplan::resolve(cfg, Some(&css.name), digits).is_ok();
    let longer = css.partitions.iter().any(|p| {
        cfg.lines.iter().any(|l| &l.partition == p && l.dn.len() > digits.len() && l.dn.starts_with(digits))
            || cfg.route_patterns.iter().any(|r| &r.partition == p && r.pattern.could_extend(digits))
    });
    match (exact, longer) {
        (true, false) => Dial::Now,
        (_, true) => Dial::Wait,
        (false, false) => Dial::Never,
    }
}

/// Civil month, day, hour and minute (UTC) of a Unix time in ms.
fn stamp(unix_ms: u64) -> Stamp {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (proleptic Gregorian), after H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    Stamp { month, day, hour: (rem / 3600) as u8, minute: ((rem % 3600) / 60) as u8 }
}

impl Engine {
    /// Port name, device, line state and hook of each FXS port the engine serves.
    pub fn analog_lines(&self) -> Vec<(String, String, &'static str, bool)> {
        self.analog.states()
    }

    /// Sets the ports up from the configuration (at start and after a reload): ports
    /// that stay keep their state and calls; new ones start idle and their devices
    /// open; gone ones close (their calls end).
    pub(crate) fn analog_configure(&mut self) {
        let want = fxs_devices(&self.config);
        let want_fxo = fxo_devices(&self.config);
        let now = self.now;
        let gone: Vec<String> = self
            .analog
            .ports
            .iter()
            .filter(|(n, p)| !want.iter().any(|(wn, wd, wc)| wn == *n && *wd == p.device && *wc == (p.country, p.call_waiting)))
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            if let Some(p) = self.analog.ports.remove(&n) {
                for call in [p.line.call(), p.line.second_call()].into_iter().flatten() {
                    let _ = self.analog_command(Command::Drop { call: call.to_string() });
                }
                if let Some(rtp) = p.other.rtp_port {
                    self.sip.b2bua.free_port(rtp);
                }
                if p.up {
                    let _ = self.analog_command(Command::Close { device: p.device.clone() });
                }
                self.sip.b2bua.busy_devices.remove(&p.device);
                if let Some(rtp) = p.media.rtp_port {
                    self.sip.b2bua.free_port(rtp);
                }
            }
        }
        let gone_fxo: Vec<String> = self
            .analog
            .fxo
            .iter()
            .filter(|(n, p)| !want_fxo.iter().any(|(wn, wd, wi, wr)| wn == *n && *wd == p.device && *wi == p.inbound && *wr == (p.input, p.polarity)))
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone_fxo {
            self.fxo_drop_all(&n);
            if let Some(p) = self.analog.fxo.remove(&n) {
                if p.up {
                    let _ = self.analog_command(Command::Close { device: p.device.clone() });
                }
            }
        }
        if want.is_empty() && want_fxo.is_empty() && self.analog.client.is_none() {
            return;
        }
        let devices: BTreeSet<String> = want.iter().map(|(_, d, _)| d.clone()).chain(want_fxo.iter().map(|(_, d, _, _)| d.clone())).collect();
        // The grant is fixed per client: a new client when the set of devices changes.
        // The ports in service stay so (the shell still drives them); their calls end.
        let mut back_up = Vec::new();
        let same = self.analog.client.is_some_and(|c| self.api.get(c).is_some_and(|s| matches!(s.grant(), Grant::Devices(d) if *d == devices)));
        if !same {
            if let Some(c) = self.analog.client {
                let names: Vec<String> = self.analog.ports.keys().cloned().collect();
                for n in names {
                    let calls: Vec<String> = self.analog.ports.get(&n).map(|p| [p.line.call(), p.line.second_call()].into_iter().flatten().map(str::to_string).collect()).unwrap_or_default();
                    for call in calls {
                        self.api_handle(c, Command::Drop { call }).ok();
                    }
                    self.analog_release_media(&n);
                    self.analog_release_other(&n);
                    if let Some(p) = self.analog.ports.remove(&n) {
                        self.sip.b2bua.busy_devices.remove(&p.device);
                        if p.up {
                            back_up.push(n);
                        }
                    }
                }
                let names: Vec<String> = self.analog.fxo.keys().cloned().collect();
                for n in names {
                    self.fxo_drop_all(&n);
                    if self.analog.fxo.remove(&n).is_some_and(|p| p.up) {
                        back_up.push(n);
                    }
                }
                self.analog.client = None;
                self.api_disconnect(c, false);
            }
            if !devices.is_empty() {
                self.analog.client = Some(self.api_connect(PRINCIPAL, Grant::Devices(devices)));
            }
        }
        for (port, device, (country, call_waiting)) in want {
            if self.analog.ports.contains_key(&port) {
                continue;
            }
            let p = Port {
                device: device.clone(),
                country,
                hook: Hook::new(HookSettings::default(), now),
                ringer: Ringer::new(RingSettings::for_country(country)),
                line: FxsLine::new(fxs_settings(country, call_waiting)),
                media: PortMedia::default(),
                other: PortMedia::default(),
                call_waiting,
                up: false,
            };
            self.analog.ports.insert(port, p);
        }
        for (port, device, inbound, (input, polarity)) in want_fxo {
            if self.analog.fxo.contains_key(&port) {
                continue;
            }
            let p = FxoPort {
                device,
                inbound,
                input,
                polarity,
                detect: RingDetect::new(RingDetectSettings::new(input)),
                line: FxoLine::new(fxo_settings(polarity)),
                media: PortMedia::default(),
                up: false,
            };
            self.analog.fxo.insert(port, p);
        }
        for n in back_up {
            self.analog_up(&n);
        }
        self.analog_pump();
    }

    /// The shell drives the port: its device goes into service.
    fn analog_up(&mut self, port: &str) {
        let device = match (self.analog.ports.get(port), self.analog.fxo.get(port)) {
            (Some(p), _) if !p.up => p.device.clone(),
            (_, Some(p)) if !p.up => p.device.clone(),
            _ => return,
        };
        match self.analog_command(Command::Open { device: device.clone(), media: None }) {
            Ok(_) => {
                log::info!("analog: port {port} in service for {device}");
                if let Some(p) = self.analog.ports.get_mut(port) {
                    p.up = true;
                }
                if let Some(p) = self.analog.fxo.get_mut(port) {
                    p.up = true;
                }
            }
            Err(e) => log::warn!("analog: port {port} cannot open {device}: {}", e.message),
        }
    }

    /// The port's hardware is gone: its call ends, its device goes out of service,
    /// and the line starts afresh (on hook) when the port is back.
    fn analog_down(&mut self, port: &str, reason: &str) {
        if self.analog.fxo.contains_key(port) {
            return self.fxo_down(port, reason);
        }
        let Some(p) = self.analog.ports.get(port) else { return };
        let (device, was_up) = (p.device.clone(), p.up);
        let calls: Vec<String> = [p.line.call(), p.line.second_call()].into_iter().flatten().map(str::to_string).collect();
        log::warn!("analog: port {port} ({device}) out of service: {reason}");
        for call in calls {
            let _ = self.analog_command(Command::Drop { call });
        }
        self.analog_release_media(port);
        self.analog_release_other(port);
        if was_up {
            let _ = self.analog_command(Command::Close { device: device.clone() });
        }
        let now = self.now;
        if let Some(p) = self.analog.ports.get_mut(port) {
            p.up = false;
            p.hook = Hook::new(HookSettings::default(), now);
            p.ringer = Ringer::new(RingSettings::for_country(p.country));
            p.line = FxsLine::new(fxs_settings(p.country, p.call_waiting));
        }
        self.sip.b2bua.busy_devices.remove(&device);
    }

    /// A CTI application's `make_call` from an FXS device it shares: the port must be
    /// off hook at dial tone; the number is dialled as if typed. The call's name.
    pub(crate) fn analog_dial_for_app(&mut self, device: &str, to: &str) -> Result<String, String> {
        let Some(port) = self.analog.port_of_device(device) else {
            return Err(format!("make_call from {device} is not available: only an FXS port off hook can place a call for an application"));
        };
        let now = self.now;
        let Some(p) = self.analog.ports.get_mut(&port) else { return Err("no such port".into()) };
        p.line.dial_for(now, to).map_err(|e| format!("make_call from {device}: {e}"))?;
        self.analog_run(&port);
        match self.analog.ports.get(&port).and_then(|p| p.line.call()) {
            Some(call) => Ok(call.to_string()),
            None => Err(format!("make_call from {device}: {to:?} cannot be called now")),
        }
    }

    /// Refuses a call offered to one of the ports' devices with `code` (a PSTN line
    /// heard busy: 486, not the 603 of a plain drop).
    fn analog_reject(&mut self, call: &str, code: u16, reason: &str) -> Result<(), (crate::core::api::ErrorCode, String)> {
        let Some(c) = self.analog.client else { return Err((crate::core::api::ErrorCode::NotLoggedIn, "no analog client".into())) };
        self.api_call_op(call, c, |b, _, ok| b.cti_reject(call, code, reason, ok))
    }

    fn analog_command(&mut self, command: Command) -> Result<CommandResult, crate::core::api::ApiError> {
        let Some(c) = self.analog.client else {
            return Err(crate::core::api::ApiError::new(crate::core::api::ErrorCode::NotLoggedIn, "no analog client"));
        };
        self.api_handle(c, command)
    }

    pub(crate) fn analog_input(&mut self, input: AnalogInput) {
        let now = self.now;
        match input {
            AnalogInput::Edge { port, signal: InSignal::Hook, active, at } => {
                let Some(p) = self.analog.ports.get_mut(&port).filter(|p| p.up) else {
                    self.analog.unknown_port_inputs += 1;
                    return;
                };
                // An edge is never in the future, nor before what was already run.
                p.hook.edge(at.min(now), active);
                p.hook.handle_timeout(now);
                self.analog_run(&port);
            }
            AnalogInput::Edge { port, signal, active, at } => self.fxo_edge(&port, signal, active, at),
            AnalogInput::CallerId { port, number, name } => {
                let Some(p) = self.analog.fxo.get_mut(&port).filter(|p| p.up) else {
                    self.analog.unknown_port_inputs += 1;
                    return;
                };
                log::info!("analog: port {port}: caller ID from the line: {number:?} {name:?}");
                p.line.caller_id(now, Cid { number, name });
                self.fxo_run(&port);
            }
            AnalogInput::ToneHeard { port, tone } => {
                let Some(p) = self.analog.fxo.get_mut(&port).filter(|p| p.up) else {
                    self.analog.unknown_port_inputs += 1;
                    return;
                };
                p.line.tone(now, tone);
                self.fxo_run(&port);
            }
            AnalogInput::Up { port } => self.analog_up(&port),
            AnalogInput::Down { port, reason } => self.analog_down(&port, &reason),
            AnalogInput::Digit { port, digit } => {
                let Some(css) = self.analog.ports.get(&port).filter(|p| p.up).and_then(|p| self.config.device(&p.device)).map(|d| d.css.clone()) else {
                    self.analog.unknown_port_inputs += 1;
                    return;
                };
                let cfg = self.config.clone();
                if let Some(p) = self.analog.ports.get_mut(&port) {
                    p.line.digit(now, digit, &|d| digit_map(&cfg, css.as_deref(), d));
                }
                self.analog_run(&port);
            }
        }
        self.analog_pump();
    }

    pub(crate) fn analog_timeouts(&mut self) {
        let now = self.now;
        let names: Vec<String> = self.analog.ports.keys().cloned().collect();
        let cfg = self.config.clone();
        for n in names {
            let Some(p) = self.analog.ports.get_mut(&n) else { continue };
            let css = cfg.device(&p.device).and_then(|d| d.css.clone());
            p.hook.handle_timeout(now);
            p.ringer.handle_timeout(now);
            p.line.handle_timeout(now, &|d| digit_map(&cfg, css.as_deref(), d));
            self.analog_run(&n);
        }
        let names: Vec<String> = self.analog.fxo.keys().cloned().collect();
        for n in names {
            if let Some(p) = self.analog.fxo.get_mut(&n) {
                p.detect.handle_timeout(now);
                p.line.handle_timeout(now);
            }
            self.fxo_run(&n);
        }
        self.analog_pump();
    }

    /// Moves what a port's machines have to say along until they are quiet.
    fn analog_run(&mut self, port: &str) {
        let now = self.now;
        for _ in 0..64 {
            let Some(p) = self.analog.ports.get_mut(port) else { return };
            let mut progressed = false;
            while let Some(ev) = p.hook.poll_event() {
                progressed = true;
                match ev {
                    HookEvent::OffHook => {
                        // Ring-trip: the ringer stops at once, before anything else.
                        p.ringer.stop();
                        p.line.off_hook(now);
                    }
                    HookEvent::OnHook => p.line.on_hook(),
                    HookEvent::Flash => p.line.flash(now),
                    HookEvent::Digit(d) => {
                        let css = self.config.device(&p.device).and_then(|d| d.css.clone());
                        let cfg = &self.config;
                        p.line.digit(now, d, &|x| digit_map(cfg, css.as_deref(), x));
                    }
                }
            }
            while let Some(o) = p.ringer.poll_output() {
                progressed = true;
                match o {
                    RingOutput::RingMode(on) => self.out.push_back(Output::Analog(AnalogOutput::Gpio { port: port.to_string(), signal: OutSignal::RingMode, active: on })),
                    RingOutput::FwdRev(on) => self.out.push_back(Output::Analog(AnalogOutput::Gpio { port: port.to_string(), signal: OutSignal::FwdRev, active: on })),
                    RingOutput::RingEnded(1) => p.line.first_ring_ended(),
                    RingOutput::RingEnded(_) => {}
                }
            }
            let Some(o) = p.line.poll_output() else {
                if !progressed {
                    break;
                }
                continue;
            };
            self.analog_line_output(port, o);
        }
        let busy = self.analog.ports.get(port).map(|p| (p.device.clone(), p.line.busy()));
        if let Some((device, busy)) = busy {
            if busy {
                self.sip.b2bua.busy_devices.insert(device);
            } else {
                self.sip.b2bua.busy_devices.remove(&device);
            }
        }
    }

    fn analog_line_output(&mut self, port: &str, o: FxsOut) {
        let now = self.now;
        let name = port.to_string();
        match o {
            FxsOut::Play(sound) => self.out.push_back(Output::Analog(AnalogOutput::Play { port: name, sound })),
            FxsOut::Ring(on) => {
                if let Some(p) = self.analog.ports.get_mut(port) {
                    if on {
                        p.ringer.ring(now);
                    } else {
                        p.ringer.stop();
                    }
                }
            }
            FxsOut::CallerId(cid) => {
                let Some(p) = self.analog.ports.get(port) else { return };
                let (fsk, _) = cid_plan(p.country);
                let signal = match fsk {
                    Some(fsk) => {
                        let when = Some(stamp(self.sip.unix_at_zero_ms().saturating_add(now.as_millis())));
                        let m = CallerId { when, number: cid.number, name: cid.name };
                        // MDMF carries the name; a number-only SDMF is what older
                        // sets understand, but every Bell set since the 1990s reads MDMF.
                        match callerid::encode_mdmf(&m) {
                            Ok(message) => CidSignal::Fsk { fsk, message },
                            Err(e) => return log::warn!("analog: port {port}: no caller ID ({e})"),
                        }
                    }
                    None => match callerid::dtmf_clip(&cid.number) {
                        Some(digits) => CidSignal::Dtmf { digits },
                        None => return,
                    },
                };
                self.out.push_back(Output::Analog(AnalogOutput::CallerId { port: name, signal }));
            }
            FxsOut::Connect { .. } => self.analog_connect(port),
            FxsOut::Disconnect => self.analog_release_media(port),
            FxsOut::CallWaiting { cas } => self.out.push_back(Output::Analog(AnalogOutput::CallWaitingTone { port: name, cas })),
            FxsOut::CallerIdOffHook(cid) => {
                let Some(fsk) = self.analog.ports.get(port).and_then(|p| cid_plan(p.country).0) else { return };
                let when = Some(stamp(self.sip.unix_at_zero_ms().saturating_add(now.as_millis())));
                match callerid::encode_mdmf(&CallerId { when, number: cid.number, name: cid.name }) {
                    Ok(message) => self.out.push_back(Output::Analog(AnalogOutput::CallerId { port: name, signal: CidSignal::FskCallWaiting { fsk, message } })),
                    Err(e) => log::warn!("analog: port {port}: no call-waiting caller ID ({e})"),
                }
            }
            FxsOut::Swap => {
                let Some(p) = self.analog.ports.get_mut(port) else { return };
                let joined = std::mem::replace(&mut p.media.joined, false);
                std::mem::swap(&mut p.media, &mut p.other);
                if joined {
                    self.out.push_back(Output::Analog(AnalogOutput::Disconnect { port: name }));
                }
            }
            FxsOut::Transfer { keep, other } => {
                self.analog_release_other(port);
                let Some(c) = self.analog.client else { return };
                self.sip.touch_call(&other);
                match self.api_call_op(&keep, c, |b, cx, ok| b.cti_join(cx, &keep, &other, ok)) {
                    Ok(()) => log::info!("analog: port {port}: {keep} put through to {other}"),
                    Err((_, e)) => {
                        log::info!("analog: port {port}: cannot put {keep} through to {other}: {e}; both end");
                        let _ = self.analog_command(Command::Drop { call: keep });
                        let _ = self.analog_command(Command::Drop { call: other });
                    }
                }
            }
            FxsOut::Hold { call } => {
                if let Err(e) = self.analog_command(Command::Hold { call: call.clone() }) {
                    log::info!("analog: port {port}: cannot hold {call}: {}", e.message);
                }
            }
            FxsOut::Unhold { call } => {
                if let Err(e) = self.analog_command(Command::Unhold { call: call.clone() }) {
                    log::info!("analog: port {port}: cannot take {call} off hold: {}", e.message);
                }
            }
            FxsOut::MakeCall { to } => {
                let Some(device) = self.analog.ports.get(port).map(|p| p.device.clone()) else { return };
                let Some(rtp) = self.analog_book(port) else {
                    log::warn!("analog: port {port}: no free RTP port in [media]'s range");
                    if let Some(p) = self.analog.ports.get_mut(port) {
                        p.line.call_placed(now, None);
                    }
                    return;
                };
                let media = Some(Media { ip: IpAddr::from([0, 0, 0, 0]), port: rtp, codec: None });
                let placed = match self.analog_command(Command::MakeCall { device: device.clone(), to: to.clone(), media, caller: None }) {
                    Ok(CommandResult::Placed { call }) => {
                        log::info!("analog: port {port} ({device}) calls {to}: {call}");
                        Some(call)
                    }
                    Ok(_) => None,
                    Err(e) => {
                        log::info!("analog: port {port} ({device}) cannot call {to}: {}", e.message);
                        None
                    }
                };
                if placed.is_none() {
                    self.analog_release_media(port);
                }
                // Events of the new call may have come already (a busy line answers
                // at once): the call's name goes to the line before them.
                if let Some(p) = self.analog.ports.get_mut(port) {
                    p.line.call_placed(now, placed);
                }
            }
            FxsOut::Answer { call } => {
                let Some(rtp) = self.analog_book(port) else {
                    log::warn!("analog: port {port}: no free RTP port in [media]'s range; the call is dropped");
                    let _ = self.analog_command(Command::Drop { call });
                    return;
                };
                let media = Some(Media { ip: IpAddr::from([0, 0, 0, 0]), port: rtp, codec: None });
                if let Err(e) = self.analog_command(Command::Answer { call: call.clone(), media, box_media: false }) {
                    log::info!("analog: port {port}: cannot answer {call}: {}", e.message);
                    self.analog_release_media(port);
                    if let Some(p) = self.analog.ports.get_mut(port) {
                        p.line.ended(now, &call, Ended::Failed);
                    }
                }
            }
            FxsOut::Drop { call } => {
                if let Err(e) = self.analog_command(Command::Drop { call: call.clone() }) {
                    log::debug!("analog: port {port}: drop {call}: {}", e.message);
                }
                self.analog_release_media(port);
            }
            FxsOut::Ignored(what) => {
                self.analog.ignored += 1;
                log::info!("analog: port {port}: {what}");
            }
        }
    }

    /// The media of port `port`, FXS or FXO.
    fn port_media(&mut self, port: &str) -> Option<&mut PortMedia> {
        match self.analog.ports.get_mut(port) {
            Some(p) => Some(&mut p.media),
            None => self.analog.fxo.get_mut(port).map(|p| &mut p.media),
        }
    }

    /// A port from `[media]`'s range for the port's call (one at a time).
    fn analog_book(&mut self, port: &str) -> Option<u16> {
        if let Some(r) = self.port_media(port).and_then(|m| m.rtp_port) {
            return Some(r);
        }
        let cfg = self.config.clone();
        let rtp = self.sip.b2bua.book_port(&cfg)?;
        if let Some(m) = self.port_media(port) {
            m.rtp_port = Some(rtp);
        }
        Some(rtp)
    }

    /// The port joins its call's media once both its RTP port and the far end are known.
    fn analog_connect(&mut self, port: &str) {
        let Some(m) = self.port_media(port) else { return };
        if let (Some(local_port), Some((remote, codec)), false) = (m.rtp_port, m.far, m.joined) {
            m.joined = true;
            self.out.push_back(Output::Analog(AnalogOutput::Connect { port: port.to_string(), local_port, remote, codec }));
        }
    }

    /// Frees the media of an FXS port's second call.
    fn analog_release_other(&mut self, port: &str) {
        let Some(p) = self.analog.ports.get_mut(port) else { return };
        let m = std::mem::take(&mut p.other);
        if let Some(r) = m.rtp_port {
            self.sip.b2bua.free_port(r);
        }
    }

    fn analog_release_media(&mut self, port: &str) {
        let Some(m) = self.port_media(port) else { return };
        let m = std::mem::take(m);
        if let Some(r) = m.rtp_port {
            self.sip.b2bua.free_port(r);
        }
        if m.joined {
            self.out.push_back(Output::Analog(AnalogOutput::Disconnect { port: port.to_string() }));
        }
    }

    /// Takes the events of the ports' client: calls offered, ringing, answered, ended.
    pub(crate) fn analog_pump(&mut self) {
        let Some(client) = self.analog.client else { return };
        // Each event may lead to commands, and those to events: bounded all the same.
        for _ in 0..1024 {
            let Some((_, ev)) = self.api_poll_event(client) else { return };
            self.analog_event(ev);
        }
        log::warn!("analog: the ports' events did not settle");
    }

    fn analog_event(&mut self, ev: Event) {
        let now = self.now;
        if let Some(port) = self.analog.fxo_of_device(&ev.device) {
            return self.fxo_event(&port, ev);
        }
        let Some(port) = self.analog.port_of_device(&ev.device) else { return };
        let Some(call) = ev.call.clone() else { return };
        match ev.kind {
            EventKind::CallOffered { from, from_name, .. } => {
                let cid = Cid {
                    number: if from.is_empty() { Field::Unavailable } else { Field::Value(from.chars().take(callerid::MAX_NUMBER).collect()) },
                    name: from_name.map_or(Field::Absent, |n| Field::Value(n.chars().take(callerid::MAX_NAME).collect())),
                };
                let waiting = self.analog.ports.get(&port).is_some_and(|p| p.line.call().is_some());
                let taken = self.analog.ports.get_mut(&port).is_some_and(|p| p.line.offered(now, &call, Some(cid)));
                if taken && waiting {
                    log::info!("analog: port {port}: {call} from {from} waits");
                } else if taken {
                    log::info!("analog: port {port} rings for {call} from {from}");
                } else {
                    // Offered while the B2BUA still thought the line free: refused.
                    let _ = self.analog_command(Command::Drop { call });
                }
            }
            EventKind::CallRinging => {
                if let Some(p) = self.analog.ports.get_mut(&port) {
                    p.line.far_ringing(&call);
                }
            }
            EventKind::MediaStarted(info) => {
                if let Some(p) = self.analog.ports.get_mut(&port) {
                    if p.line.call() == Some(call.as_str()) {
                        p.media.far = Some((SocketAddr::new(info.remote_ip, info.remote_port), info.codec));
                        p.line.connected(&call);
                    }
                }
            }
            EventKind::CallEnded { reason } => {
                let how = match reason {
                    // Dropped by an application sharing the device (the port's own drops
                    // leave the line without the call first): as the far end hanging up.
                    EndReason::Dropped | EndReason::Hangup | EndReason::Redirected => Some(Ended::Hangup),
                    EndReason::Busy => Some(Ended::Busy),
                    EndReason::NoAnswer | EndReason::Rejected | EndReason::ForwardedOnFailure | EndReason::Failed => Some(Ended::Failed),
                };
                let (mine, second) = self.analog.ports.get(&port).map_or((false, false), |p| (p.line.has(&call), p.line.second_call() == Some(call.as_str())));
                if let (Some(how), true) = (how, mine) {
                    if let Some(p) = self.analog.ports.get_mut(&port) {
                        p.line.ended(now, &call, how);
                    }
                    if second {
                        self.analog_release_other(&port);
                    } else {
                        self.analog_release_media(&port);
                    }
                }
            }
            _ => return,
        }
        self.analog_run(&port);
    }
}

/// The FXO ports' side (inbound PSTN calls).
impl Engine {
    fn fxo_edge(&mut self, port: &str, signal: InSignal, active: bool, at: Time) {
        let now = self.now;
        let Some(p) = self.analog.fxo.get_mut(port).filter(|p| p.up) else {
            self.analog.unknown_port_inputs += 1;
            return;
        };
        match signal {
            InSignal::RingDetect => {
                p.detect.edge(at.min(now), active);
                p.detect.handle_timeout(now);
            }
            InSignal::LoopCurrent => p.line.supervision(now, Supervision::LoopCurrentGone, active),
            // Any change of polarity while seized: the far end went (or answered, on an
            // outbound call, which is not built).
            InSignal::Polarity => p.line.supervision(now, Supervision::PolarityReversed, active),
            InSignal::Hook => {
                self.analog.unknown_port_inputs += 1;
                return;
            }
        }
        self.fxo_run(port);
    }

    fn fxo_run(&mut self, port: &str) {
        let now = self.now;
        for _ in 0..64 {
            let Some(p) = self.analog.fxo.get_mut(port) else { return };
            let mut progressed = false;
            while let Some(ev) = p.detect.poll_event() {
                progressed = true;
                match ev {
                    RingEvent::RingStarted { .. } => p.line.ring_started(now),
                    RingEvent::RingEnded => p.line.ring_ended(now),
                    RingEvent::RingingOver => p.line.ringing_over(),
                }
            }
            let Some(o) = p.line.poll_output() else {
                if !progressed {
                    break;
                }
                continue;
            };
            self.fxo_output(port, o);
        }
        // A line in use takes no call out of it (486 in routing).
        if let Some((device, busy)) = self.analog.fxo.get(port).map(|p| (p.device.clone(), p.line.busy())) {
            if busy {
                self.sip.b2bua.busy_devices.insert(device);
            } else {
                self.sip.b2bua.busy_devices.remove(&device);
            }
        }
    }

    fn fxo_output(&mut self, port: &str, o: FxoOut) {
        match o {
            FxoOut::Place { cid } => {
                let Some((device, inbound)) = self.analog.fxo.get(port).map(|p| (p.device.clone(), p.inbound.clone())) else { return };
                let caller = caller_of(cid.as_ref());
                let placed = match self.analog_book(port) {
                    None => {
                        log::warn!("analog: port {port}: no free RTP port in [media]'s range; the PSTN call is not taken");
                        None
                    }
                    Some(rtp) => {
                        let media = Some(Media { ip: IpAddr::from([0, 0, 0, 0]), port: rtp, codec: None });
                        log::info!("analog: port {port} ({device}) rings: a call from {} to {inbound}", caller.number);
                        match self.analog_command(Command::MakeCall { device, to: inbound.clone(), media, caller: Some(caller) }) {
                            Ok(CommandResult::Placed { call }) => Some(call),
                            Ok(_) => None,
                            Err(e) => {
                                log::info!("analog: port {port}: the PSTN call cannot reach {inbound}: {}", e.message);
                                None
                            }
                        }
                    }
                };
                if placed.is_none() {
                    self.analog_release_media(port);
                }
                if let Some(p) = self.analog.fxo.get_mut(port) {
                    p.line.placed(placed);
                }
            }
            FxoOut::Drop { call } => {
                if let Err(e) = self.analog_command(Command::Drop { call: call.clone() }) {
                    log::debug!("analog: port {port}: drop {call}: {}", e.message);
                }
                self.analog_release_media(port);
            }
            FxoOut::Seize(on) => {
                log::info!("analog: port {port}: line {}", if on { "seized" } else { "released" });
                self.out.push_back(Output::Analog(AnalogOutput::Gpio { port: port.to_string(), signal: OutSignal::Seize, active: on }));
            }
            FxoOut::Connect { .. } => self.analog_connect(port),
            FxoOut::Disconnect => self.analog_release_media(port),
            FxoOut::Dial { digits } => {
                log::info!("analog: port {port}: dials {digits}");
                self.out.push_back(Output::Analog(AnalogOutput::Dial { port: port.to_string(), digits }));
            }
            FxoOut::Answer { call } => {
                let answered = match self.analog_book(port) {
                    None => Err("no free RTP port in [media]'s range".to_string()),
                    Some(rtp) => {
                        let media = Some(Media { ip: IpAddr::from([0, 0, 0, 0]), port: rtp, codec: None });
                        self.analog_command(Command::Answer { call: call.clone(), media, box_media: false }).map(|_| ()).map_err(|e| e.message)
                    }
                };
                match answered {
                    Ok(()) => log::info!("analog: port {port}: the far end answered {call}"),
                    Err(e) => {
                        log::info!("analog: port {port}: cannot answer {call}: {e}");
                        let _ = self.analog_command(Command::Drop { call: call.clone() });
                        self.analog_release_media(port);
                        if let Some(p) = self.analog.fxo.get_mut(port) {
                            p.line.ended(&call);
                        }
                    }
                }
            }
            FxoOut::Reject { call, code } => {
                let reason = if code == 486 { "Busy Here (the PSTN line is busy)" } else { "Service Unavailable (the PSTN line went dead)" };
                log::info!("analog: port {port}: {call} refused: {code} {reason}");
                if let Err(e) = self.analog_reject(&call, code, reason) {
                    log::debug!("analog: port {port}: reject {call}: {}", e.1);
                }
                self.analog_release_media(port);
            }
        }
    }

    /// Ends the port's call and lets go of the line (reconfiguration, failure).
    fn fxo_drop_all(&mut self, port: &str) {
        let Some(p) = self.analog.fxo.get(port) else { return };
        let (call, seized) = (p.line.call().map(str::to_string), p.line.seized());
        if let Some(call) = call {
            let _ = self.analog_command(Command::Drop { call });
        }
        self.analog_release_media(port);
        if seized {
            self.out.push_back(Output::Analog(AnalogOutput::Gpio { port: port.to_string(), signal: OutSignal::Seize, active: false }));
        }
    }

    fn fxo_down(&mut self, port: &str, reason: &str) {
        let Some(p) = self.analog.fxo.get(port) else { return };
        let (device, was_up) = (p.device.clone(), p.up);
        log::warn!("analog: port {port} ({device}) out of service: {reason}");
        self.fxo_drop_all(port);
        if was_up {
            let _ = self.analog_command(Command::Close { device });
        }
        if let Some(p) = self.analog.fxo.get_mut(port) {
            p.up = false;
            p.detect = RingDetect::new(RingDetectSettings::new(p.input));
            p.line = FxoLine::new(fxo_settings(p.polarity));
        }
    }

    fn fxo_event(&mut self, port: &str, ev: Event) {
        let Some(call) = ev.call.clone() else { return };
        let now = self.now;
        let mine = self.analog.fxo.get(port).is_some_and(|p| p.line.call() == Some(call.as_str()));
        match ev.kind {
            // A route pattern sends a call out of this line: `to` is the number to dial
            // (stripped and prefixed by the pattern).
            EventKind::CallOffered { to, from, .. } => {
                let taken = self.analog.fxo.get_mut(port).is_some_and(|p| p.line.outbound(now, &call, &to));
                if taken {
                    log::info!("analog: port {port}: {call} from {from} goes out to {to}");
                } else if let Err(e) = self.analog_reject(&call, 486, "Busy Here (the PSTN line is in use)") {
                    log::debug!("analog: port {port}: reject {call}: {}", e.1);
                }
            }
            EventKind::MediaStarted(info) if mine => {
                if let Some(p) = self.analog.fxo.get_mut(port) {
                    p.media.far = Some((SocketAddr::new(info.remote_ip, info.remote_port), info.codec));
                    p.line.answered(&call);
                }
            }
            // Dropped by the port's own client, the line has let the call go already;
            // by an application sharing the device, it ends here.
            EventKind::CallEnded { .. } if mine => {
                if let Some(p) = self.analog.fxo.get_mut(port) {
                    p.line.ended(&call);
                }
                self.analog_release_media(port);
            }
            _ => return,
        }
        self.fxo_run(port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_id_time_stamps_are_civil_utc() {
        // 2026-12-02 10:30 UTC.
        assert_eq!(stamp(1_796_207_400_000), Stamp { month: 12, day: 2, hour: 10, minute: 30 });
        // 2024-02-29 23:59 UTC.
        assert_eq!(stamp(1_709_251_140_000), Stamp { month: 2, day: 29, hour: 23, minute: 59 });
        assert_eq!(stamp(0), Stamp { month: 1, day: 1, hour: 0, minute: 0 });
    }
}
