//! The SIP message layer (RFC 3261 §7, §19, §20, §25) and transaction layer (§17):
//! parsing, printing, typed header values, message-level checks, and the pure
//! transaction state machines. Owns no dialogs, registrations or calls.

pub mod check;
pub mod error;
pub mod headers;
pub mod msg;
pub mod name;
pub mod parse;
pub mod print;
pub mod registrar;
pub mod text;
pub mod txn;
pub mod transaction;
pub mod uri;

pub use check::{answer_unparsable, check_request, check_request_with, Policy, Rejection, Unparsable};
pub use error::ParseError;
pub use headers::{AuthParams, CSeq, Contact, MediaType, NameAddr, Reason, Via, BRANCH_COOKIE};
pub use msg::{Header, Headers, Message, Request, Response, SipHeaders};
pub use name::{HeaderName, Method};
pub use parse::parse_message;
pub use print::reason_phrase;
pub use text::Param;
pub use uri::{Host, SipUri, TelUri, Uri};
