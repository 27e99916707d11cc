//! Where a SIP message came from (or goes to), and the box's address it reached: what
//! the transaction layer, the registrar and the B2BUA need of a transport.

use crate::core::{ConnId, Transport};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Where a request came from, and the box's address it reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub source: SocketAddr,
    pub transport: Transport,
    pub conn: Option<ConnId>,
    /// The box's own address the message arrived at (Via sent-by and Contact toward
    /// this peer).
    pub local: SocketAddr,
}
