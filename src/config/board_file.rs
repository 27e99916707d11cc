//! The board file format (the model is `crate::board`): parse with spans, then check ports, signals per port kind,
//! GPIO lines and ALSA PCMs used once. Errors carry file:line:column like the config.

use super::{from_toml, ConfigError, Ctx, Reason};
use crate::board::{Board, Driver, GpioLine, Port, PortKind, Signals, BUILTIN};
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
    hook: Option<S<RawGpio>>,
    ring: Option<S<RawGpio>>,
    relay: Option<S<RawGpio>>,
    ring_detect: Option<S<RawGpio>>,
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
        let (need, forbid) = match kind {
            PortKind::Fxs => ([("hook", &p.hook), ("ring", &p.ring)], [("relay", &p.relay), ("ring_detect", &p.ring_detect)]),
            PortKind::Fxo => ([("relay", &p.relay), ("ring_detect", &p.ring_detect)], [("hook", &p.hook), ("ring", &p.ring)]),
        };
        for (key, v) in forbid {
            if let Some(v) = v {
                c.err(v.span(), Reason::NotForPort { key, kind: kind.name() });
            }
        }
        let mut got = Vec::new();
        for (key, v) in need {
            match v {
                None => c.err(p.name.span(), Reason::RequiredForPort { key, kind: kind.name() }),
                Some(g) => {
                    let g = g.get_ref();
                    let line = g.line.get_ref();
                    if line.is_empty() {
                        c.err(g.line.span(), Reason::BadName { what: "GPIO line", value: String::new() });
                    } else if let Some(other) = gpios.get(line) {
                        c.err(g.line.span(), Reason::GpioTaken { gpio: line.clone(), port: other.clone() });
                    } else {
                        gpios.insert(line.clone(), pname.clone());
                    }
                    got.push(GpioLine { line: line.clone(), active_low: g.active_low });
                }
            }
        }
        let mut got = got.into_iter();
        if let (Some(a), Some(b)) = (got.next(), got.next()) {
            let signals = match kind {
                PortKind::Fxs => Signals::Fxs { hook: a, ring: b },
                PortKind::Fxo => Signals::Fxo { relay: a, ring_detect: b },
            };
            ports.push(Port { name: pname, kind, playback: p.playback.get_ref().clone(), capture: p.capture.get_ref().clone(), signals });
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
