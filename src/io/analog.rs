//! The shell's side of the analog ports. Only the simulated board's twin is built: it
//! stands in for the GPIO lines and the sound device of each port (FXS and FXO), so
//! the whole appliance runs on a laptop. The twin keeps what the engine
//! drives (the ringer's RM and F/R levels, what the port plays, caller ID, the audio
//! bridge), and takes the subscriber's part from the control socket: `analog hook
//! PORT off|on`, `analog flash PORT`, `analog dtmf PORT DIGITS` (as the DTMF detector
//! of the capture would report them), `analog dial PORT DIGITS` (rotary: hook pulses
//! at 10 pps), `analog status`; for an FXO port the PSTN's part: `analog ring PORT
//! [NUMBER [NAME]]` (rings with the US cadence, caller ID after the first ring, as the
//! line's FSK receiver would report it, or, for a port with a real sound device, as
//! its capture carries it) and `analog hangup PORT` (the PSTN caller
//! goes: the ringing stops, or the loop current drops on a seized line). Caller ID is modulated into samples as the port's
//! playback would carry them and decoded again by the box's own FSK receiver, so the
//! status shows what a set on the line would display.
//!
//! On a real board (`driver = "linux"`) the GPIO lines are the character device's
//! (io/gpio.rs) and each port's sound is its ALSA device on a real-time thread
//! (io/port_audio.rs). On the sim board a port whose `playback` is not a `sim:` name
//! is a real ALSA device too, with the twin's GPIO: the host tests run the real ALSA
//! code that way, over alsa-lib's file plugin.

use super::driver::{Clock, Event};
use super::gpio::GpioPorts;
use super::port_audio::{AudioCmd, AudioSettings, PortAudio};
use crate::board::{Board, PortKind, RingSignal, Signals};
use crate::codec::callerid::{self, Field, FskRx, Preamble};
use crate::core::analog::engine::{AnalogInput, AnalogOutput, CidSignal, InSignal, OutSignal};
use crate::core::analog::fxs::Sound;
use crate::core::Input;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// The longest digit string `analog dtmf` / `analog dial` take.
const MAX_SIM_DIGITS: usize = 32;

/// What the twin shows of one port.
#[derive(Debug, Default)]
struct SimPort {
    off_hook: bool,
    ring_mode: bool,
    /// Rings started (RM rises) and F/R flips since the port came up.
    rings: u64,
    fr_flips: u64,
    sound: Option<Sound>,
    /// The last caller ID, as a set on the line decoded it.
    caller_id: Option<String>,
    /// The audio bridge: local RTP port, far end, codec.
    media: Option<String>,
    /// Digits being sent (a `dtmf` or `dial` in progress).
    sending: bool,
    /// An FXO port (a PSTN line), and how its ring detector signals (a level or pulses).
    fxo: bool,
    ring_level: bool,
    /// FXO: the seize relay, and the PSTN ringing the line (a task).
    seized: bool,
    ringing: Option<tokio::task::JoinHandle<()>>,
}

pub struct AnalogShell {
    /// The sim board's twin of each port's GPIO lines (and of its sound, unless the
    /// port has an ALSA device in `audio`).
    ports: BTreeMap<String, SimPort>,
    /// Ports with a real sound device: their audio threads.
    audio: BTreeMap<String, PortAudio>,
    /// A real board's GPIO lines.
    gpio: Option<GpioPorts>,
    clock: Clock,
    inbox: mpsc::Sender<Event>,
}

impl AnalogShell {
    /// The ports' drivers: the twin on the sim board, GPIO and ALSA on a real one (and
    /// ALSA for any sim-board port whose PCM is not a `sim:` name).
    pub fn new(board: &Board, settings: AudioSettings, clock: Clock, inbox: mpsc::Sender<Event>) -> AnalogShell {
        let mut audio = BTreeMap::new();
        for p in &board.ports {
            if board.simulated && p.playback.starts_with("sim:") {
                continue;
            }
            match PortAudio::start(p, settings, inbox.clone()) {
                Ok(a) => {
                    audio.insert(p.name.clone(), a);
                }
                Err(e) => log::warn!("analog: port {}: cannot start its audio thread: {e}", p.name),
            }
        }
        let mut gpio = None;
        let ports = if board.simulated {
            board
                .ports
                .iter()
                .map(|p| {
                    let ring_level = matches!(p.signals, Signals::Fxo { ring_signal: RingSignal::Level, .. });
                    (p.name.clone(), SimPort { fxo: p.kind == PortKind::Fxo, ring_level, ..SimPort::default() })
                })
                .collect()
        } else {
            if !board.ports.is_empty() {
                match GpioPorts::open(board, clock, inbox.clone(), &audio) {
                    Ok(g) => {
                        log::info!("analog: board {}: GPIO lines of {} on {}", board.name, g.up.join(", "), board.gpio_chip.as_deref().unwrap_or("-"));
                        gpio = Some(g);
                    }
                    Err(e) => log::warn!("analog: board {}: its ports stay out of service: {e}", board.name),
                }
            }
            BTreeMap::new()
        };
        AnalogShell { ports, audio, gpio, clock, inbox }
    }

    /// The inputs that bring the twin's ports into service (the engine ignores ports
    /// no device uses).
    pub fn ups(&self) -> Vec<Input> {
        let real = self.gpio.iter().flat_map(|g| g.up.iter());
        self.ports.keys().chain(real).map(|p| Input::Analog(AnalogInput::Up { port: p.clone() })).collect()
    }

    /// What the engine asked of a port.
    pub fn output(&mut self, o: AnalogOutput) {
        log::debug!("analog: {o:?}");
        match o {
            AnalogOutput::Gpio { port, signal, active } => {
                if signal == OutSignal::Seize {
                    if let Some(a) = self.audio.get(&port) {
                        a.send(AudioCmd::Seized(active));
                    }
                }
                if let Some(g) = self.gpio.as_ref().filter(|g| g.has(&port)) {
                    g.set(&port, signal, active);
                    return;
                }
                let Some(p) = self.ports.get_mut(&port) else { return };
                match signal {
                    OutSignal::RingMode => {
                        if active && !p.ring_mode {
                            p.rings += 1;
                        }
                        p.ring_mode = active;
                    }
                    OutSignal::FwdRev => p.fr_flips += 1,
                    OutSignal::Seize => {
                        p.seized = active;
                        if active {
                            // Answered: the exchange stops ringing, loop current flows.
                            if let Some(t) = p.ringing.take() {
                                t.abort();
                            }
                            let at = self.clock.now();
                            self.send(Input::Analog(AnalogInput::Edge { port, signal: InSignal::LoopCurrent, active: true, at }));
                        }
                    }
                }
            }
            AnalogOutput::Play { port, sound } => {
                if let Some(a) = self.audio.get(&port) {
                    a.send(AudioCmd::Play(sound));
                }
                if let Some(p) = self.ports.get_mut(&port) {
                    p.sound = Some(sound);
                }
            }
            AnalogOutput::CallerId { port, signal } => {
                if let Some(a) = self.audio.get(&port) {
                    log::info!("analog: port {port}: caller ID to the line: {}", describe(&signal));
                    a.send(AudioCmd::CallerId(signal));
                    return;
                }
                let shown = decode_as_a_set_would(&signal);
                log::info!("analog: port {port}: caller ID {shown}");
                if let Some(p) = self.ports.get_mut(&port) {
                    p.caller_id = Some(shown);
                }
            }
            AnalogOutput::Connect { port, local_port, remote, codec } => {
                let m = format!("{local_port}<->{remote}/{}", crate::core::cti::wire::codec_name(codec));
                log::info!("analog: port {port} joined to RTP {m}");
                if let Some(a) = self.audio.get(&port) {
                    a.send(AudioCmd::Connect { local_port, remote, codec });
                }
                if let Some(p) = self.ports.get_mut(&port) {
                    p.media = Some(m);
                }
            }
            AnalogOutput::Disconnect { port } => {
                log::info!("analog: port {port} left the call's RTP");
                if let Some(a) = self.audio.get(&port) {
                    a.send(AudioCmd::Disconnect);
                }
                if let Some(p) = self.ports.get_mut(&port) {
                    p.media = None;
                }
            }
            AnalogOutput::Dial { port, digits } => match self.audio.get(&port) {
                Some(a) => {
                    log::info!("analog: port {port} dials {digits}");
                    a.send(AudioCmd::Dial(digits));
                }
                None => log::info!("analog: port {port} dials {digits} (the twin carries no audio)"),
            },
            AnalogOutput::CallWaitingTone { port, cas } => match self.audio.get(&port) {
                Some(a) => {
                    log::info!("analog: port {port}: call-waiting tone (alerting signal: {cas})");
                    a.send(AudioCmd::CallWaitingTone { cas });
                }
                None => log::info!("analog: port {port}: call-waiting tone (alerting signal: {cas}; the twin carries no audio)"),
            },
        }
    }

    /// A control-socket command beginning with `analog`; `lines` is the engine's view
    /// of each port (port, device, line state, off hook).
    pub fn control(&mut self, words: &[&str], lines: &[(String, String, &'static str, bool)]) -> String {
        match words {
            ["status"] => self.status(lines),
            ["hook", port, how @ ("off" | "on")] => {
                let off = *how == "off";
                match self.port(port) {
                    Err(e) => e,
                    Ok(p) if p.sending => format!("error: {port} is sending digits; wait for them\n"),
                    Ok(p) => {
                        p.off_hook = off;
                        if let Some(a) = self.audio.get(*port) {
                            a.send(AudioCmd::OffHook(off));
                        }
                        let at = self.clock.now();
                        self.send(Input::Analog(AnalogInput::Edge { port: port.to_string(), signal: InSignal::Hook, active: off, at }));
                        format!("ok: {port} {}\n", if off { "off hook" } else { "on hook" })
                    }
                }
            }
            ["flash", port] => match self.port(port) {
                Err(e) => e,
                Ok(p) if !p.off_hook || p.sending => format!("error: {port} must be off hook and idle to flash\n"),
                Ok(_) => {
                    self.pulses(port, &[(false, Duration::from_millis(400)), (true, Duration::ZERO)]);
                    format!("ok: {port} flashed\n")
                }
            },
            ["dtmf", port, digits] | ["dial", port, digits] => {
                let rotary = words[0] == "dial";
                let ok = |c: char| if rotary { c.is_ascii_digit() } else { c.is_ascii_digit() || "*#ABCD".contains(c) };
                if digits.is_empty() || digits.len() > MAX_SIM_DIGITS || !digits.chars().all(ok) {
                    let what = if rotary { "0-9" } else { "0-9, *, #, A-D" };
                    return format!("error: digits must be 1-{MAX_SIM_DIGITS} of {what}\n");
                }
                match self.port(port) {
                    Err(e) => e,
                    Ok(p) if !p.off_hook || p.sending => format!("error: {port} must be off hook and not already sending digits\n"),
                    Ok(_) if rotary => {
                        self.pulses(port, &rotary_edges(digits));
                        format!("ok: {port} dials {digits} (rotary, 10 pps)\n")
                    }
                    Ok(_) => {
                        self.dtmf(port, digits);
                        format!("ok: {port} sends {digits} (DTMF)\n")
                    }
                }
            }
            ["ring", port, cid @ ..] => {
                let number = cid.first().copied();
                if number.is_some_and(|n| n.is_empty() || n.len() > callerid::MAX_NUMBER || !n.chars().all(|c| c.is_ascii_digit() || c == '+')) {
                    return format!("error: the caller's number must be 1-{} digits\n", callerid::MAX_NUMBER);
                }
                let name = (cid.len() > 1).then(|| cid[1..].join(" ")).filter(|n| n.len() <= callerid::MAX_NAME);
                if cid.len() > 1 && name.is_none() {
                    return format!("error: the caller's name must be at most {} characters\n", callerid::MAX_NAME);
                }
                match self.fxo_port(port) {
                    Err(e) => e,
                    Ok(p) if p.seized || p.ringing.as_ref().is_some_and(|t| !t.is_finished()) => format!("error: {port} is already ringing or in a call\n"),
                    Ok(_) => {
                        self.pstn_ring(port, number.map(str::to_string), name);
                        format!("ok: the PSTN rings {port}\n")
                    }
                }
            }
            ["hangup", port] => match self.fxo_port(port) {
                Err(e) => e,
                Ok(p) => {
                    let ringing = p.ringing.take().is_some_and(|t| {
                        let live = !t.is_finished();
                        t.abort();
                        live
                    });
                    if p.seized {
                        let at = self.clock.now();
                        self.send(Input::Analog(AnalogInput::Edge { port: port.to_string(), signal: InSignal::LoopCurrent, active: false, at }));
                        format!("ok: the PSTN caller on {port} hung up (loop current gone)\n")
                    } else if ringing {
                        format!("ok: the PSTN stops ringing {port}\n")
                    } else {
                        format!("error: {port} is neither ringing nor in a call\n")
                    }
                }
            },
            _ => "error: analog status | hook PORT off|on | flash PORT | dtmf PORT DIGITS | dial PORT DIGITS | ring PORT [NUMBER [NAME]] | hangup PORT\n".into(),
        }
    }

    fn port(&mut self, name: &str) -> Result<&mut SimPort, String> {
        self.port_of(name, false)
    }

    fn fxo_port(&mut self, name: &str) -> Result<&mut SimPort, String> {
        self.port_of(name, true)
    }

    fn port_of(&mut self, name: &str, fxo: bool) -> Result<&mut SimPort, String> {
        let what = if fxo { "FXO" } else { "FXS" };
        let known: Vec<String> = self.ports.iter().filter(|(_, p)| p.fxo == fxo).map(|(n, _)| n.clone()).collect();
        self.ports.get_mut(name).filter(|p| p.fxo == fxo).ok_or_else(|| {
            if known.is_empty() {
                format!("error: no simulated {what} port here (ports are simulated on the sim board only); {name:?} is unknown\n")
            } else {
                format!("error: no simulated {what} port {name:?} (ports: {})\n", known.join(", "))
            }
        })
    }

    /// The exchange rings the line: 2 s on, 4 s off (US), ten times at most; caller ID
    /// 500 ms after the first ring. Edges carry their own times, as the GPIO driver's
    /// edge events do.
    fn pstn_ring(&mut self, port: &str, number: Option<String>, name: Option<String>) {
        let Some(level) = self.ports.get(port).map(|p| p.ring_level) else { return };
        let (inbox, clock, port_name) = (self.inbox.clone(), self.clock, port.to_string());
        // A port with a real sound device hears the caller ID in its capture; the
        // twin only rings it.
        let sound = self.audio.get(port).cloned();
        let number = if sound.is_some() { None } else { number };
        let task = tokio::task::spawn_local(async move {
            let edge = |active: bool, at| Event::Input(Input::Analog(AnalogInput::Edge { port: port_name.clone(), signal: InSignal::RingDetect, active, at }));
            let mut at = clock.now();
            for ring in 0..10 {
                if let Some(a) = &sound {
                    a.send(AudioCmd::Ringing);
                }
                if level {
                    for (active, hold) in [(true, 2000), (false, 0)] {
                        tokio::time::sleep_until(clock.instant(at)).await;
                        if inbox.send(edge(active, at)).await.is_err() {
                            return;
                        }
                        at = at + Duration::from_millis(hold);
                    }
                } else {
                    // A half-wave pulse per cycle of 20 Hz, doubled by the bridge: 40/s.
                    for _ in 0..80 {
                        for (active, hold) in [(true, 10), (false, 15)] {
                            tokio::time::sleep_until(clock.instant(at)).await;
                            if inbox.send(edge(active, at)).await.is_err() {
                                return;
                            }
                            at = at + Duration::from_millis(hold);
                        }
                    }
                }
                if ring == 0 {
                    if let Some(n) = &number {
                        tokio::time::sleep_until(clock.instant(at + Duration::from_millis(500))).await;
                        let name = name.clone().map_or(Field::Absent, Field::Value);
                        let cid = Input::Analog(AnalogInput::CallerId { port: port_name.clone(), number: Field::Value(n.clone()), name });
                        if inbox.send(Event::Input(cid)).await.is_err() {
                            return;
                        }
                    }
                }
                at = at + Duration::from_millis(4000);
            }
        });
        if let Some(p) = self.ports.get_mut(port) {
            p.ringing = Some(task);
        }
    }

    fn send(&self, input: Input) {
        if self.inbox.try_send(Event::Input(input)).is_err() {
            log::warn!("analog: the engine's inbox is full; a simulated port's input is lost");
        }
    }

    fn status(&self, lines: &[(String, String, &'static str, bool)]) -> String {
        let mut s = String::new();
        for name in self.gpio.iter().flat_map(|g| g.up.iter()) {
            let (device, line, off) = lines.iter().find(|l| l.0 == *name).map_or(("-", "not in service", false), |l| (l.1.as_str(), l.2, l.3));
            s += &format!("{name} device={device} line={line} hook={} driver=gpio audio=alsa\n", if off { "off" } else { "on" });
        }
        if self.ports.is_empty() {
            if s.is_empty() {
                return "no analog ports in service\n".into();
            }
            return s;
        }
        for (name, p) in &self.ports {
            let (device, line) = lines.iter().find(|l| l.0 == *name).map_or(("-", "not in service"), |l| (l.1.as_str(), l.2));
            if p.fxo {
                s += &format!(
                    "{name} device={device} line={line} seized={} pstn_ringing={} media={}\n",
                    if p.seized { "yes" } else { "no" },
                    if p.ringing.as_ref().is_some_and(|t| !t.is_finished()) { "yes" } else { "no" },
                    p.media.as_deref().unwrap_or("-"),
                );
                continue;
            }
            let sound = match p.sound {
                None | Some(Sound::Silence) => "silence".to_string(),
                Some(Sound::Howler) => "howler".to_string(),
                Some(Sound::Tone(t)) => format!("{t:?}").to_lowercase(),
            };
            s += &format!(
                "{name} device={device} line={line} hook={} ringing={} rings={} fr_flips={} sound={sound} caller_id={} media={}\n",
                if p.off_hook { "off" } else { "on" },
                if p.ring_mode { "yes" } else { "no" },
                p.rings,
                p.fr_flips,
                p.caller_id.as_deref().unwrap_or("-"),
                p.media.as_deref().unwrap_or("-"),
            );
        }
        s
    }

    /// Hook edges at the given spacing, each stamped with its own time, from a task:
    /// (level, how long it holds before the next edge).
    fn pulses(&mut self, port: &str, edges: &[(bool, Duration)]) {
        if let Some(p) = self.ports.get_mut(port) {
            p.sending = true;
        }
        let (inbox, clock, port, edges) = (self.inbox.clone(), self.clock, port.to_string(), edges.to_vec());
        tokio::task::spawn_local(async move {
            let start = clock.now();
            let mut at = start;
            for (level, hold) in edges {
                tokio::time::sleep_until(clock.instant(at)).await;
                let input = Input::Analog(AnalogInput::Edge { port: port.clone(), signal: InSignal::Hook, active: level, at });
                if inbox.send(Event::Input(input)).await.is_err() {
                    return;
                }
                at = at + hold;
            }
            let _ = inbox.send(Event::SimDone { port }).await;
        });
    }

    fn dtmf(&mut self, port: &str, digits: &str) {
        if let Some(p) = self.ports.get_mut(port) {
            p.sending = true;
        }
        let (inbox, port, digits) = (self.inbox.clone(), port.to_string(), digits.to_string());
        tokio::task::spawn_local(async move {
            for d in digits.chars() {
                // A 100 ms tone and 100 ms of silence: one detection per 200 ms.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if inbox.send(Event::Input(Input::Analog(AnalogInput::Digit { port: port.clone(), digit: d }))).await.is_err() {
                    return;
                }
            }
            let _ = inbox.send(Event::SimDone { port }).await;
        });
    }

    /// A `pulses` or `dtmf` run has ended.
    pub fn done(&mut self, port: &str) {
        if let Some(p) = self.ports.get_mut(port) {
            p.sending = false;
        }
    }
}

/// Rotary dialling at 10 pulses per second, 60 % break, 700 ms between digits; the
/// line ends off hook.
fn rotary_edges(digits: &str) -> Vec<(bool, Duration)> {
    let mut v = Vec::new();
    for d in digits.chars() {
        let n = match d.to_digit(10) {
            Some(0) => 10,
            Some(n) => n,
            None => continue,
        };
        for i in 0..n {
            v.push((false, Duration::from_millis(60)));
            let make = if i + 1 == n { 700 } else { 40 };
            v.push((true, Duration::from_millis(make)));
        }
    }
    v
}

/// A caller-ID signal as the log names it.
fn describe(signal: &CidSignal) -> String {
    match signal {
        CidSignal::Fsk { fsk, message } => format!("{fsk:?} FSK, {} bytes", message.len()),
        CidSignal::FskCallWaiting { fsk, message } => format!("{fsk:?} FSK into the call, {} bytes", message.len()),
        CidSignal::Dtmf { digits } => format!("DTMF {digits}"),
    }
}

/// What a caller-ID set on the line would show: FSK modulated as the port plays it,
/// then decoded by the box's receiver; DTMF CLIP read from its digits.
fn decode_as_a_set_would(signal: &CidSignal) -> String {
    let field = |f: &Field| match f {
        Field::Value(v) => v.clone(),
        Field::Private => "private".into(),
        Field::Unavailable => "unavailable".into(),
        Field::Absent => "-".into(),
    };
    match signal {
        CidSignal::Fsk { fsk, message } => {
            let mut samples = Vec::new();
            callerid::modulate(*fsk, Preamble::ON_HOOK, message, 8000, &mut samples);
            // Silence after it, as the line has before the next ring.
            samples.extend(std::iter::repeat_n(0, 800));
            let mut rx = FskRx::new(*fsk);
            rx.push(&samples);
            match rx.poll() {
                Some(Ok(m)) => {
                    let kind = match fsk {
                        callerid::Fsk::Bell202 => "bell202",
                        callerid::Fsk::V23 => "v23",
                    };
                    format!("{kind}:number={},name={}", field(&m.number), field(&m.name))
                }
                Some(Err(e)) => format!("undecodable({e})"),
                None => "undecodable(no message)".into(),
            }
        }
        CidSignal::FskCallWaiting { .. } => "call-waiting caller ID (not decoded by the twin)".into(),
        CidSignal::Dtmf { digits } => match callerid::parse_dtmf_clip(digits) {
            Some(n) => format!("dtmf:number={}", field(&n)),
            None => "undecodable(dtmf)".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::callerid::{CallerId, Fsk};

    #[test]
    fn caller_id_shown_is_what_the_receiver_decodes_from_the_modulated_message() {
        let m = CallerId { when: None, number: Field::Value("1001".into()), name: Field::Value("Caller".into()) };
        let message = callerid::encode_mdmf(&m).unwrap();
        assert_eq!(decode_as_a_set_would(&CidSignal::Fsk { fsk: Fsk::Bell202, message: message.clone() }), "bell202:number=1001,name=Caller");
        assert_eq!(decode_as_a_set_would(&CidSignal::Fsk { fsk: Fsk::V23, message }), "v23:number=1001,name=Caller");
        let mut broken = callerid::encode_mdmf(&m).unwrap();
        let last = broken.len() - 1;
        broken[last] ^= 1;
        assert!(decode_as_a_set_would(&CidSignal::Fsk { fsk: Fsk::Bell202, message: broken }).starts_with("undecodable"));
    }

    #[test]
    fn rotary_edges_are_ten_pulses_for_zero_and_end_off_hook() {
        let e = rotary_edges("10");
        assert_eq!(e.len(), 2 * (1 + 10));
        assert_eq!(e.iter().filter(|(l, _)| !*l).count(), 11);
        assert_eq!(e.last(), Some(&(true, Duration::from_millis(700))));
        assert!(e.iter().all(|(l, d)| if *l { *d == Duration::from_millis(40) || *d == Duration::from_millis(700) } else { *d == Duration::from_millis(60) }));
    }
}
