//! Calls that fall silent. An answered call with no request from either party for
//! `[sip] call_idle_s` is asked, with an in-dialog OPTIONS to each SIP leg (RFC 3261
//! §11), whether each party still has it. A party that answers 481 (no such dialog)
//! or 408, or does not answer before its transaction times out (64*T1), has lost
//! the call: it is ended (BYE to the other party) and counted
//! (`calls_ended_idle`). Any other final answer (200, 405, 501...) shows the party
//! still there, and the clock starts again: a long call is never cut for being long.
//! This is a dialog keepalive, not an RFC 4028 session timer, which needs both
//! parties to support it.

use super::leg::Side;
use super::table::{branch, Action, B2bua, ClientTxn, Ctx, Purpose};
use crate::core::sip::Method;
use crate::core::Time;
use std::time::Duration;

impl B2bua {
    /// A request from a party of call `id`: its idle clock starts again.
    pub(super) fn activity(&mut self, id: u64, now: Time) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.last_activity = Some(now);
        }
    }

    /// Probes the answered calls idle for `call_idle_s` (run once a second); returns
    /// the calls probed (their dialogs' CSeq moved on).
    pub fn sweep_idle(&mut self, cx: &mut Ctx<'_>) -> Vec<u64> {
        let idle = Duration::from_secs(u64::from(cx.cfg.sip.call_idle_s));
        let now = cx.now;
        let mut due = Vec::new();
        for (id, c) in self.calls.iter_mut() {
            if !c.state.is_established() || c.probing > 0 {
                continue;
            }
            let last = *c.last_activity.get_or_insert(now);
            if now.since(last) >= idle {
                due.push(*id);
            }
        }
        for &id in &due {
            self.probe(cx, id);
        }
        due
    }

    fn probe(&mut self, cx: &mut Ctx<'_>, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut probes = Vec::new();
        for side in [Side::A, Side::B] {
            if let Some(l) = call.leg_mut(side).filter(|l| !l.call_id.is_empty()) {
                if let Some(r) = l.request(Method::Options, &branch(cx.rng)) {
                    probes.push((side, r, l.peer));
                }
            }
        }
        call.probing = probes.len().min(2) as u8;
        if probes.is_empty() {
            // No SIP party to ask (both ends are the box's own): nothing can be lost.
            call.last_activity = Some(cx.now);
            return;
        }
        log::debug!("call {id}: idle for {} s; asking its parties whether they still have it", cx.cfg.sip.call_idle_s);
        for (side, request, to) in probes {
            let txn = ClientTxn(cx.rng.next_u64());
            self.client.insert(txn, (id, side, Purpose::IdleProbe));
            self.out.push(Action::Request { txn, request, to });
        }
    }

    /// The final answer to an idle probe of `side` (`None`: none came).
    pub(super) fn probe_answered(&mut self, cx: &mut Ctx<'_>, id: u64, side: Side, status: Option<u16>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.probing = call.probing.saturating_sub(1);
        if matches!(status, None | Some(408) | Some(481)) {
            let who = if side == Side::A { "caller" } else { "called party" };
            let what = status.map_or_else(|| "no answer".to_string(), |s| format!("answered {s}"));
            log::warn!("call {id}: the {who} no longer has the call (idle probe {what}); ending it");
            self.stats.calls_ended_idle += 1;
            self.hang_up(cx, id, Some(side));
        } else if call.probing == 0 {
            call.last_activity = Some(cx.now);
        }
    }
}
