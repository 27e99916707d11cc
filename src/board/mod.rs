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

/// What an FXO port's ring detector gives while the line rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingSignal {
    /// Active for the whole ring (a DAA that filters the ring itself).
    Level,
    /// A pulse per half cycle of the ring voltage (a bare optocoupler behind a bridge:
    /// twice the ring frequency), or per cycle behind a single diode.
    Pulses,
}

impl RingSignal {
    pub fn name(self) -> &'static str {
        match self {
            RingSignal::Level => "level",
            RingSignal::Pulses => "pulses",
        }
    }
}

/// The GPIO lines of a port. Only GPIO-driven parts for now; SPI parts (ProSLIC,
/// Si3050) would be another variant, with their bus and chip select instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signals {
    /// A low-power SLIC of the Ag1171 / KS0835F kind.
    Fxs {
        /// SHK, input: active while off-hook (and on ring-trip).
        hook: GpioLine,
        /// RM, output: active to put the ring voltage on the line.
        ring_mode: GpioLine,
        /// F/R, output: toggled at the ring frequency while ringing; at rest, active
        /// means reversed polarity.
        fwd_rev: GpioLine,
        /// PD, output, optional: active to power the SLIC down.
        power_down: Option<GpioLine>,
    },
    /// A DAA of the hobby kind.
    Fxo {
        /// Input: the optocoupler across the line.
        ring_detect: GpioLine,
        ring_signal: RingSignal,
        /// Output: active to close the loop (off-hook).
        seize: GpioLine,
        /// Input, optional: active while loop current flows (its drop is a disconnect).
        loop_current: Option<GpioLine>,
        /// Input, optional: the line's polarity (a reversal is answer or disconnect).
        polarity: Option<GpioLine>,
    },
}

impl Signals {
    /// Every GPIO line of the port with its board-file key, inputs and outputs alike.
    pub fn lines(&self) -> Vec<(&'static str, &GpioLine)> {
        let mut v = Vec::new();
        match self {
            Signals::Fxs { hook, ring_mode, fwd_rev, power_down } => {
                v.extend([("hook", hook), ("ring_mode", ring_mode), ("fwd_rev", fwd_rev)]);
                v.extend(power_down.iter().map(|l| ("power_down", l)));
            }
            Signals::Fxo { ring_detect, seize, loop_current, polarity, .. } => {
                v.extend([("ring_detect", ring_detect), ("seize", seize)]);
                v.extend(loop_current.iter().map(|l| ("loop_current", l)));
                v.extend(polarity.iter().map(|l| ("polarity", l)));
            }
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub kind: PortKind,
    /// ALSA PCM for audio toward the line (e.g. "plughw:CARD=Device,DEV=0").
    pub playback: String,
    /// ALSA PCM for audio from the line.
    pub capture: String,
    /// Gain (dB) applied to what the port plays, and to what it captures.
    pub playback_gain_db: i8,
    pub capture_gain_db: i8,
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
