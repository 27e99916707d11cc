//! The board file format (the model is `crate::board`): parse with spans, then check ports, signals per port kind,
//! GPIO lines and ALSA PCMs used once. Errors carry file:line:column like the config.

use super::{from_toml, ConfigError, Ctx, Reason};
use crate::board::{Board, Driver, GpioLine, Port, PortKind, RingSignal, Signals, BUILTIN};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use toml::Spanned as S;

/// Loading boards lives here, beside the configuration's diagnostics, so that
/// `crate::board` stays a plain model that depends on nothing.
impl Board {
    /// A built-in board.
    pub fn by_name(name: &str) -> Option<Board> {
        let (n, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        Board::parse_str(text, &format!("<built-in board {n}>")).ok()
    }

    /// Parses and validates a board file's text.
    pub fn parse_str(text: &str, file: &str) -> Result<Board, ConfigError> {
        parse(text, file).map_err(|mut v| v.swap_remove(0))
    }

    /// Reads, parses and validates a board file.
    pub fn load_file(path: &Path) -> Result<Board, ConfigError> {
        let name = path.display().to_string();
        let text = super::read_text(path).map_err(|reason| ConfigError { file: name.clone(), line: 0, column: 0, reason })?;
        Board::parse_str(&text, &name)
    }

}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    name: S<String>,
    description: Option<String>,
    driver: S<String>,
    gpio_chip: Option<S<String>>,
    #[serde(default)]
    port: Vec<RawPort>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: S<String>,
    kind: S<String>,
    playback: S<String>,
    capture: S<String>,
    /// Gain (dB) of what the port plays to the line and of what it hears from it.
    playback_gain_db: Option<S<i64>>,
    capture_gain_db: Option<S<i64>>,
    // FXS (a SLIC)
    hook: Option<S<RawGpio>>,
    ring_mode: Option<S<RawGpio>>,
    fwd_rev: Option<S<RawGpio>>,
    power_down: Option<S<RawGpio>>,
    // FXO (a DAA)
    ring_detect: Option<S<RawGpio>>,
    ring_signal: Option<S<String>>,
    seize: Option<S<RawGpio>>,
    loop_current: Option<S<RawGpio>>,
    polarity: Option<S<RawGpio>>,
    // The earlier model's keys, refused with what replaced them.
    ring: Option<S<toml::Value>>,
    relay: Option<S<toml::Value>>,
}

/// Whether a port of a kind must, may or must not have a signal.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
    Forbidden,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpio {
    line: S<String>,
    #[serde(default)]
    active_low: bool,
}

pub(super) fn parse(text: &str, file: &str) -> Result<Board, Vec<ConfigError>> {
    if let Err(e) = toml::de::DeTable::parse(text) {
        return Err(vec![from_toml(&e, text, true).into_error(text, file)]);
    }
    let raw: RawBoard = toml::from_str(text).map_err(|e| vec![from_toml(&e, text, false).into_error(text, file)])?;
    let mut c = Ctx::new(text, file);
    let name = c.name(&raw.name, "board name");
    let driver = c.choice(&raw.driver, "driver", &["sim", "linux"], |s| match s {
        "sim" => Some(Driver::Sim),
        "linux" => Some(Driver::Linux),
        _ => None,
    });
    if driver == Some(Driver::Linux) && raw.gpio_chip.is_none() {
        c.err(raw.driver.span(), Reason::Requires { key: "driver = \"linux\"", needs: "gpio_chip" });
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut gpios: HashMap<String, String> = HashMap::new();
    let mut pcms: HashMap<String, String> = HashMap::new();
    let mut ports = Vec::new();
    for p in &raw.port {
        let pname = c.name(&p.name, "port name");
        if let Some(&first_line) = names.get(&pname) {
            c.err(p.name.span(), Reason::Duplicate { what: "port", name: pname.clone(), first_line });
        } else {
            names.insert(pname.clone(), c.line_of(&p.name.span()));
        }
        let Some(kind) = c.choice(&p.kind, "kind", &["fxs", "fxo"], |s| match s {
            "fxs" => Some(PortKind::Fxs),
            "fxo" => Some(PortKind::Fxo),
            _ => None,
        }) else {
            continue;
        };
        for pcm in [&p.playback, &p.capture] {
            if pcm.get_ref().is_empty() {
                c.err(pcm.span(), Reason::BadName { what: "ALSA PCM", value: String::new() });
            }
        }
        let mut gains = [0i8; 2];
        for (i, (key, v)) in [("playback_gain_db", &p.playback_gain_db), ("capture_gain_db", &p.capture_gain_db)].into_iter().enumerate() {
            if let Some(v) = v {
                let (min, max) = (crate::limits::PORT_GAIN_DB_MIN, crate::limits::PORT_GAIN_DB_MAX);
                match i8::try_from(*v.get_ref()) {
                    Ok(g) if (min..=max).contains(&g) => gains[i] = g,
                    _ => c.err(v.span(), Reason::OutOfRange { key, value: *v.get_ref(), min: min.into(), max: max.into() }),
                }
            }
        }
        if driver == Some(Driver::Linux) {
            let mut mine = vec![p.playback.get_ref()];
            if p.capture.get_ref() != p.playback.get_ref() {
                mine.push(p.capture.get_ref());
            }
            for (pcm, span) in mine.into_iter().zip([p.playback.span(), p.capture.span()]) {
                if let Some(other) = pcms.get(pcm) {
                    c.err(span, Reason::PcmTaken { pcm: pcm.clone(), port: other.clone() });
                } else {
                    pcms.insert(pcm.clone(), pname.clone());
                }
            }
        }
        for (key, v, by) in [
            ("ring", &p.ring, "a SLIC rings through `ring_mode` (RM) and `fwd_rev` (F/R)"),
            ("relay", &p.relay, "an FXO port's off-hook relay is `seize`"),
        ] {
            if let Some(v) = v {
                c.err(v.span(), Reason::ReplacedBoardKey { key, by });
            }
        }
        use Need::*;
        let fxs = kind == PortKind::Fxs;
        let (on_fxs, on_fxo) = ([Required, Required, Required, Optional, Forbidden, Forbidden, Forbidden, Forbidden], [Forbidden, Forbidden, Forbidden, Forbidden, Required, Required, Optional, Optional]);
        let keys = ["hook", "ring_mode", "fwd_rev", "power_down", "ring_detect", "seize", "loop_current", "polarity"];
        let values = [&p.hook, &p.ring_mode, &p.fwd_rev, &p.power_down, &p.ring_detect, &p.seize, &p.loop_current, &p.polarity];
        let mut got: Vec<Option<GpioLine>> = Vec::new();
        for ((key, v), need) in keys.into_iter().zip(values).zip(if fxs { on_fxs } else { on_fxo }) {
            match (v, need) {
                (Some(v), Forbidden) => {
                    c.err(v.span(), Reason::NotForPort { key, kind: kind.name() });
                    got.push(None);
                }
                (None, Required) => {
                    // An earlier key in its place has said what to write instead.
                    let replaced = match key {
                        "ring_mode" | "fwd_rev" => p.ring.is_some(),
                        "seize" => p.relay.is_some(),
                        _ => false,
                    };
                    if !replaced {
                        c.err(p.name.span(), Reason::RequiredForPort { key, kind: kind.name() });
                    }
                    got.push(None);
                }
                (None, _) => got.push(None),
                (Some(g), _) => {
                    let g = g.get_ref();
                    let line = g.line.get_ref();
                    if line.is_empty() {
                        c.err(g.line.span(), Reason::BadName { what: "GPIO line", value: String::new() });
                    } else if let Some(other) = gpios.get(line) {
                        c.err(g.line.span(), Reason::GpioTaken { gpio: line.clone(), port: other.clone() });
                    } else {
                        gpios.insert(line.clone(), pname.clone());
                    }
                    got.push(Some(GpioLine { line: line.clone(), active_low: g.active_low }));
                }
            }
        }
        let ring_signal = match (&p.ring_signal, fxs) {
            (Some(v), true) => {
                c.err(v.span(), Reason::NotForPort { key: "ring_signal", kind: kind.name() });
                None
            }
            (None, false) => {
                c.err(p.name.span(), Reason::RequiredForPort { key: "ring_signal", kind: kind.name() });
                None
            }
            (None, true) => None,
            (Some(v), false) => c.choice(v, "ring_signal", &["level", "pulses"], |s| match s {
                "level" => Some(RingSignal::Level),
                "pulses" => Some(RingSignal::Pulses),
                _ => None,
            }),
        };
        let mut got = got.into_iter();
        let mut next = || got.next().flatten();
        let (hook, ring_mode, fwd_rev, power_down) = (next(), next(), next(), next());
        let (ring_detect, seize, loop_current, polarity) = (next(), next(), next(), next());
        let signals = match (kind, hook, ring_mode, fwd_rev, ring_detect, ring_signal, seize) {
            (PortKind::Fxs, Some(hook), Some(ring_mode), Some(fwd_rev), ..) => Some(Signals::Fxs { hook, ring_mode, fwd_rev, power_down }),
            (PortKind::Fxo, _, _, _, Some(ring_detect), Some(ring_signal), Some(seize)) => {
                Some(Signals::Fxo { ring_detect, ring_signal, seize, loop_current, polarity })
            }
            _ => None,
        };
        if let Some(signals) = signals {
            ports.push(Port {
                name: pname,
                kind,
                playback: p.playback.get_ref().clone(),
                capture: p.capture.get_ref().clone(),
                playback_gain_db: gains[0],
                capture_gain_db: gains[1],
                signals,
            });
        }
    }
    if !c.errs.is_empty() {
        let mut errs = c.errs;
        errs.sort_by_key(|e| (e.line, e.column));
        return Err(errs);
    }
    let driver = driver.unwrap_or(Driver::Sim);
    Ok(Board {
        name,
        description: raw.description.unwrap_or_default(),
        driver,
        simulated: driver == Driver::Sim,
        gpio_chip: raw.gpio_chip.map(|g| g.into_inner()),
        ports,
    })
}
