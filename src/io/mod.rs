//! The shell: everything that touches the world (sockets, clock, signals, sd_notify,
//! files, ALSA, GPIO). It feeds the engine and carries out its outputs; it holds no
//! call or CTI state of its own.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // the shell is where the clock, files, sockets and threads are

pub mod analog;
pub mod control;
pub mod cti_client;
pub mod driver;
pub mod gpio;
/// Stream framing is a pure codec (`crate::codec::framing`); the old path stays.
pub use crate::codec::framing;
pub mod http;
pub mod listeners;
pub mod load;
pub mod media;
pub mod notify;
pub mod pair;
pub mod pairnet;
pub mod port_audio;
pub mod run;
pub mod supervisor;
pub mod trim;
pub mod verifier;
pub mod writer;
