//! The SIP message layer (RFC 3261 §7, §19, §20, §25), the transaction layer (§17,
//! txn.rs) and the registrar (§10, registrar.rs): parsing, printing, typed header
//! values, message-level checks, and pure state machines. Dialogs and calls are in
//! `core::call`.
//!
//! How the engine uses it (core/endpoint.rs), per `Input::Sip { bytes, .. }`:
//! 1. `parse_message(&bytes)`; on `Err(e)`: `answer_unparsable(&bytes, &e, tag)` gives
//!    a 400/505 to send statelessly, or `Unparsable::Drop` (count it).
//! 2. A request: `check_request(&req)`; on `Err(rej)` send `rej.response(&req, tag)`.
//! 3. `TxnLayer::on_request` / `on_response`; `Incoming::Overloaded` means answer 503.
//!    Then drain `poll_transmit` into `Output::Transmit`, `poll_event` into the TU,
//!    and fold `next_timeout` into the engine's own; on `Input::Timeout` call
//!    `on_timeout(now)`.

pub mod check;
pub mod error;
pub mod headers;
pub mod msg;
pub mod name;
pub mod parse;
pub mod print;
pub mod origin;
pub mod text;
pub mod txn;
pub mod uri;

/// The methods the box handles, for Allow.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER";

pub use check::{answer_unparsable, check_request, check_request_with, Policy, Rejection, Unparsable};
pub use error::ParseError;
pub use headers::{AuthParams, CSeq, Contact, MediaType, NameAddr, Reason, Via, BRANCH_COOKIE};
pub use msg::{Header, Headers, Message, Request, Response, SipHeaders};
pub use name::{HeaderName, Method};
pub use origin::Origin;
pub use parse::parse_message;
pub use print::reason_phrase;
pub use text::Param;
pub use uri::{Host, SipUri, TelUri, Uri};
