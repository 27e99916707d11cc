//! ctibox: call control, CTI server, analog lines and peer failover in one binary.
//!
//! # The sans-IO contract
//!
//! [`core`] is a deterministic state machine in the style of quinn-proto and str0m.
//! Inputs go in with the time (`Engine::handle_input(now, input)`), outputs come out
//! (`Engine::poll_output()` until it returns `None`), and `Engine::poll_timeout()`
//! says when to call again with [`core::Input::Timeout`]. The engine never reads a
//! clock, never sleeps, never spawns, and never touches a socket or a file; its
//! randomness comes from a seeded RNG handed to it. `clippy.toml` bans the clock and
//! `thread::sleep`; only [`io`] and `main.rs` may allow them.
//!
//! [`io`] is the thin shell that owns the world: sockets, timers, signals, sd_notify,
//! files, ALSA and GPIO. It feeds the engine and carries out what it asks.

pub mod board;
pub mod codec;
pub mod config;
pub mod core;
pub mod io;
pub mod limits;
pub mod logger;
pub mod persist;
