//! The CTI server inside the engine: the wire protocol (wire.rs) and, beside it, the
//! session semantics (sessions, device ownership, route points, ports, call control).

pub mod server;
pub mod wire;

pub use wire::{parse_request, ErrorCode, Event, EventKind, Reply, Request, RequestId, WireError};
