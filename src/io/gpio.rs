//! The analog ports' GPIO lines on a real board, through the GPIO character device
//! (v2 uAPI) with the `gpiocdev` crate: the board file's `gpio_chip` (a /dev path, a
//! `gpiochipN` name or a chip label) and its line names, found by walking the chip's
//! line info. One line request holds every line of every port (inputs with both
//! edges and the kernel's monotonic time stamps, outputs driven inactive at start);
//! one thread ("gpio") waits for edge events and hands them to the engine with their
//! own times. The engine's outputs are set from the shell (one ioctl each). A port
//! whose lines are missing or taken stays out of service; the others go on.

use super::driver::{Clock, Event};
use super::port_audio::{AudioCmd, PortAudio};
use crate::board::{Board, GpioLine, Signals};
use crate::core::analog::engine::{AnalogInput, InSignal, OutSignal};
use crate::core::{Input, Time};
use gpiocdev::line::{EdgeDetection, EdgeKind, Offset, Value};
use gpiocdev::request::Request;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The lines of the ports that came up.
pub struct GpioPorts {
    req: Arc<Request>,
    outputs: Vec<((String, OutSignal), Offset)>,
    pub up: Vec<String>,
}

impl std::fmt::Debug for GpioPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpioPorts").field("up", &self.up).finish()
    }
}

/// Which chip the board names: a path, a name such as gpiochip0, or a label.
fn find_chip(want: &str) -> Result<PathBuf, String> {
    if want.starts_with('/') {
        return gpiocdev::chip::is_chip(want).map_err(|e| format!("{want} is not a GPIO chip: {e}"));
    }
    let chips = gpiocdev::chip::chips().map_err(|e| format!("cannot list the GPIO chips: {e}"))?;
    let mut seen = Vec::new();
    for path in chips {
        let Ok(chip) = gpiocdev::Chip::from_path(&path) else { continue };
        let Ok(info) = chip.info() else { continue };
        if info.name == want || info.label == want {
            return Ok(path);
        }
        seen.push(format!("{} ({})", info.name, info.label));
    }
    Err(format!("no GPIO chip named or labelled {want:?} (chips: {})", if seen.is_empty() { "none".to_string() } else { seen.join(", ") }))
}

impl GpioPorts {
    /// Finds and requests every port's lines and starts the edge thread. `audio` are
    /// the ports' sound threads (an FXO port listens for caller ID when it rings).
    pub fn open(board: &Board, clock: Clock, inbox: tokio::sync::mpsc::Sender<Event>, audio: &BTreeMap<String, PortAudio>) -> Result<GpioPorts, String> {
        let want = board.gpio_chip.as_deref().ok_or("the board names no gpio_chip")?;
        let path = find_chip(want)?;
        let chip = gpiocdev::Chip::from_path(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut names: HashMap<String, (Offset, bool)> = HashMap::new();
        for info in chip.line_info_iter().map_err(|e| format!("{}: {e}", path.display()))? {
            let Ok(info) = info else { continue };
            if !info.name.is_empty() {
                names.insert(info.name.clone(), (info.offset, info.used));
            }
        }
        let mut builder = Request::builder();
        builder.on_chip(&path).with_consumer("ctibox");
        let mut inputs: HashMap<Offset, (String, InSignal)> = HashMap::new();
        let mut outputs = Vec::new();
        let mut up = Vec::new();
        let mut any = false;
        for port in &board.ports {
            let mut ins: Vec<(InSignal, &GpioLine)> = Vec::new();
            let mut outs: Vec<(OutSignal, &GpioLine)> = Vec::new();
            let mut idle: Vec<&GpioLine> = Vec::new();
            match &port.signals {
                Signals::Fxs { hook, ring_mode, fwd_rev, power_down } => {
                    ins.push((InSignal::Hook, hook));
                    outs.extend([(OutSignal::RingMode, ring_mode), (OutSignal::FwdRev, fwd_rev)]);
                    idle.extend(power_down.iter());
                }
                Signals::Fxo { ring_detect, seize, loop_current, polarity, .. } => {
                    ins.push((InSignal::RingDetect, ring_detect));
                    ins.extend(loop_current.iter().map(|l| (InSignal::LoopCurrent, l)));
                    ins.extend(polarity.iter().map(|l| (InSignal::Polarity, l)));
                    outs.push((OutSignal::Seize, seize));
                }
            }
            let all = ins.iter().map(|(_, l)| *l).chain(outs.iter().map(|(_, l)| *l)).chain(idle.iter().copied());
            let missing: Vec<String> = all
                .filter_map(|l| match names.get(&l.line) {
                    None => Some(format!("{} is not on {}", l.line, path.display())),
                    Some((_, true)) => Some(format!("{} is in use by another program", l.line)),
                    Some(_) => None,
                })
                .collect();
            if !missing.is_empty() {
                log::warn!("analog: port {} stays out of service: {}", port.name, missing.join("; "));
                continue;
            }
            for (signal, l) in &ins {
                let offset = names[&l.line].0;
                builder.with_line(offset).as_input().with_edge_detection(EdgeDetection::BothEdges);
                if l.active_low {
                    builder.as_active_low();
                }
                inputs.insert(offset, (port.name.clone(), *signal));
            }
            for (signal, l) in &outs {
                let offset = names[&l.line].0;
                builder.with_line(offset).as_output(Value::Inactive);
                if l.active_low {
                    builder.as_active_low();
                }
                outputs.push(((port.name.clone(), *signal), offset));
            }
            for l in &idle {
                builder.with_line(names[&l.line].0).as_output(Value::Inactive);
                if l.active_low {
                    builder.as_active_low();
                }
            }
            up.push(port.name.clone());
            any = true;
        }
        if !any {
            return Err(format!("no port's lines are on {}", path.display()));
        }
        let req = Arc::new(builder.request().map_err(|e| format!("requesting the ports' lines on {}: {e}", path.display()))?);
        // The state the lines are in now (a phone already off hook), then every edge.
        let base = (clock.now(), monotonic_ns());
        let mut first = Vec::new();
        for (&offset, (port, signal)) in &inputs {
            if let Ok(Value::Active) = req.value(offset) {
                first.push(Input::Analog(AnalogInput::Edge { port: port.clone(), signal: *signal, active: true, at: base.0 }));
            }
        }
        let sounds: HashMap<String, PortAudio> = board.ports.iter().filter_map(|p| audio.get(&p.name).map(|a| (p.name.clone(), a.clone()))).collect();
        let thread_req = req.clone();
        std::thread::Builder::new()
            .name("gpio".into())
            .spawn(move || edges(thread_req, inputs, base, first, inbox, sounds))
            .map_err(|e| format!("cannot start the GPIO thread: {e}"))?;
        Ok(GpioPorts { req, outputs, up })
    }

    /// Whether this driver has the port.
    pub fn has(&self, port: &str) -> bool {
        self.up.iter().any(|p| p == port)
    }

    /// Drives an output line.
    pub fn set(&self, port: &str, signal: OutSignal, active: bool) {
        let Some(&(_, offset)) = self.outputs.iter().find(|((p, s), _)| p == port && *s == signal) else { return };
        let v = if active { Value::Active } else { Value::Inactive };
        if let Err(e) = self.req.set_value(offset, v) {
            log::warn!("analog: port {port}: cannot set {signal:?}: {e}");
        }
    }
}

fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec() as u64),
        Err(_) => 0,
    }
}

/// The edge thread: each event to the engine, stamped with the kernel's time of the
/// edge on the engine's clock.
fn edges(
    req: Arc<Request>,
    inputs: HashMap<Offset, (String, InSignal)>,
    base: (Time, u64),
    first: Vec<Input>,
    inbox: tokio::sync::mpsc::Sender<Event>,
    sounds: HashMap<String, PortAudio>,
) {
    // The port's sound thread listens while the line rings (FXO) or the handset is
    // off hook (FXS).
    let tell = |input: &Input| {
        if let Input::Analog(AnalogInput::Edge { port, signal, active, .. }) = input {
            match (signal, sounds.get(port)) {
                (InSignal::RingDetect, Some(a)) if *active => a.send(AudioCmd::Ringing),
                (InSignal::Hook, Some(a)) => a.send(AudioCmd::OffHook(*active)),
                _ => {}
            }
        }
    };
    // False once the engine has gone (its inbox is closed).
    let send = |input: Input| inbox.blocking_send(Event::Input(input)).is_ok();
    for i in first {
        tell(&i);
        if !send(i) {
            return;
        }
    }
    loop {
        match req.wait_edge_event(Duration::from_secs(3600)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                log::warn!("analog: GPIO events stopped: {e}");
                return;
            }
        }
        let ev = match req.read_edge_event() {
            Ok(ev) => ev,
            Err(e) => {
                log::warn!("analog: GPIO event unreadable: {e}");
                continue;
            }
        };
        let Some((port, signal)) = inputs.get(&ev.offset) else { continue };
        let active = ev.kind == EdgeKind::Rising;
        let at = Time(base.0 .0.saturating_add(ev.timestamp_ns.saturating_sub(base.1) / 1000));
        let input = Input::Analog(AnalogInput::Edge { port: port.clone(), signal: *signal, active, at });
        tell(&input);
        if !send(input) {
            return;
        }
    }
}
