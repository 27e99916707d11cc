//! Calls through the back-to-back user agent. A call has two ends (`end::End`): the
//! caller (A) and the called party (B), each a SIP dialog (a leg: with a phone the
//! box is UAS toward the caller and UAC toward the called party, SDP passed through
//! unchanged so media flows phone to phone) or a CTI device; analog lines and
//! built-in applications come as new ends. Each call is a state machine
//! (`state::CallState`); the call table (`table::B2bua`) maps dialogs, transactions
//! and media streams to calls and dispatches to them. Owns routing (dial plan,
//! forwarding) and dialog state; talks to the transaction layer only through
//! `Action`s and the transaction ids it is given (the transaction layer knows no
//! calls). Pure.
//!
//! table.rs: the call table, dispatch of responses, timeouts and ends of calls;
//! state.rs: one call and its `CallState`; end.rs: its ends; routing.rs: a new call,
//! routing, forwarding, ringing the called party, CANCEL; relay.rs: in-dialog
//! requests, ACK, hang-up; cti.rs: CTI device ends and watched phones; moh.rs:
//! music on hold; box_media.rs: the box's own media and media events.

pub mod box_media;
pub mod cti;
pub mod dialplan;
pub mod end;
mod idle;
pub mod leg;
pub mod moh;
pub mod snapshot;
mod relay;
mod routing;
pub mod state;
pub mod table;

/// The call table under its former name (`call::b2bua::Ctx`).
pub use table as b2bua;
pub use table::{Action, B2bua, ClientTxn, Ctx, ServerTxn};
