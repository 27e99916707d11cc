//! Analog ports' line signalling, pure and on the engine's clock: the FXS hook switch
//! (`hook`: debounce, flash, hang-up, rotary digits), the FXS ringer (`ring`: the
//! cadence and the ring frequency made by toggling the SLIC's F/R line), and the FXO
//! ring detector (`ring_detect`). The shell hands in GPIO edges with their times and
//! drives the outputs these ask for; nothing here touches hardware.
//!
//! Not yet wired: the ports themselves (GPIO and ALSA twins, the line machines that
//! tie these to calls) are still to come; calls to analog devices get 480 until then.

pub mod hook;
pub mod ring;
pub mod ring_detect;
pub mod engine;
pub mod fxs;
pub mod fxo;
