//! Calls through the back-to-back user agent: each call is two SIP dialogs (legs),
//! the caller's (A, where the box is the UAS) and the called party's (B, where the
//! box is the UAC), with SDP passed through unchanged so media flows phone to phone.
//! Owns routing (dial plan, forwarding) and dialog state; talks to the transaction
//! layer only through `Action`s and the handles it is given. Pure.

pub mod box_media;
pub mod cti;
pub mod dialplan;
pub mod end;
pub mod leg;
pub mod moh;
mod relay;
mod routing;
pub mod state;
pub mod table;

/// The call table under its former name (`call::b2bua::Ctx`).
pub use table as b2bua;
pub use table::{Action, B2bua, ClientTxn, Ctx, ServerTxn};
