//! Boards: which ALSA PCMs and GPIO lines make up each analog port, and whether the
//! hardware is real (`linux`) or simulated (`sim`). The built-in boards are embedded
//! from board/*/board.toml; `[board] file` loads another one. Owns no hardware: the
//! io layer opens what a board names. The model only: the board file format (parse,
//! check, load) is read with the configuration's diagnostics, in
//! `config/board_file.rs`, so this module imports nothing of the crate.

/// The built-in boards: (name, board.toml text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("sim", include_str!("../../board/sim/board.toml")),
    ("rpi4", include_str!("../../board/rpi4/board.toml")),
    ("rpi5", include_str!("../../board/rpi5/board.toml")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// alsa_sim and gpio_sim: runs anywhere, nothing touched.
    Sim,
    /// Real ALSA PCMs and the GPIO character device (gpiochip).
    Linux,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A phone or fax plugs in: we give battery, detect hook, ring it.
    Fxs,
    /// A PSTN line plugs in: we detect ringing and seize the line.
    Fxo,
}

impl PortKind {
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Fxs => "fxs",
            PortKind::Fxo => "fxo",
        }
    }
}

/// A GPIO line by its name as `gpioinfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpioLine {
    pub line: String,
    /// The electrical level is low when the signal is active.
    pub active_low: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signals {
    /// hook: input, active while off-hook; ring: output, active while ringing.
    Fxs { hook: GpioLine, ring: GpioLine },
    /// relay: output, active to seize (go off-hook); ring_detect: input, active while the line rings.
    Fxo { relay: GpioLine, ring_detect: GpioLine },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub kind: PortKind,
    /// ALSA PCM for audio toward the line (e.g. "plughw:CARD=Device,DEV=0").
    pub playback: String,
    /// ALSA PCM for audio from the line.
    pub capture: String,
    pub signals: Signals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub name: String,
    pub description: String,
    pub driver: Driver,
    /// Same as `driver == Driver::Sim`.
    pub simulated: bool,
    /// gpiochip device name ("gpiochip0") or label ("pinctrl-rp1"); None on sim.
    pub gpio_chip: Option<String>,
    pub ports: Vec<Port>,
}

impl Board {
    pub fn port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// A simulated board without ports (only a fallback; the built-in sim has ports).
    pub fn empty_sim() -> Board {
        Board { name: "sim".into(), description: String::new(), driver: Driver::Sim, simulated: true, gpio_chip: None, ports: Vec::new() }
    }
}
