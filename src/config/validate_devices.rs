//! Devices (per-type fields, lines, css, pool, board ports, SIP credentials), route
//! patterns, forward reachability and CTI app users. Called from `validate_plan`. No I/O.

use super::dialplan::{is_dn, Pattern};
use super::error::{Reason, Unreachable};
use super::model::*;
use super::raw::*;
use super::secrets::{parse_app_secret, weakness, GENERATE};
use super::validate::Ctx;
use super::validate_plan::{resolve_line, DnIndex, Names};
use crate::board::{Board, PortKind};
use std::collections::HashMap;
use std::ops::Range;

const SIP_PHONE: &[&str] = &["username", "password"];
const CTI_PORT: &[&str] = &["media", "codec"];
const ROUTE_POINT: &[&str] = &["max_calls", "answer_timeout_s"];
const FXS: &[&str] = &["port", "call_waiting"];
const FXO: &[&str] = &["port", "inbound_dn", "polarity_answer", "answer_delay_s"];

/// The type-specific keys a device has, with their spans.
fn present(d: &RawDevice) -> Vec<(&'static str, Range<usize>)> {
    let mut v = Vec::new();
    let mut s = |k: &'static str, sp: Option<Range<usize>>| {
        if let Some(sp) = sp {
            v.push((k, sp));
        }
    };
    s("username", d.username.as_ref().map(|x| x.span()));
    s("password", d.password.as_ref().map(|x| x.span()));
    s("max_calls", d.max_calls.as_ref().map(|x| x.span()));
    s("answer_timeout_s", d.answer_timeout_s.as_ref().map(|x| x.span()));
    s("media", d.media.as_ref().map(|x| x.span()));
    s("codec", d.codec.as_ref().map(|x| x.span()));
    s("port", d.port.as_ref().map(|x| x.span()));
    s("inbound_dn", d.inbound_dn.as_ref().map(|x| x.span()));
    s("call_waiting", d.call_waiting.as_ref().map(|x| x.span()));
    s("polarity_answer", d.polarity_answer.as_ref().map(|x| x.span()));
    s("answer_delay_s", d.answer_delay_s.as_ref().map(|x| x.span()));
    v
}

pub(super) fn devices(
    c: &mut Ctx,
    raw: &RawConfig,
    idx: &DnIndex,
    css_names: &Names,
    pools: &[String],
    board: Option<&Board>,
) -> Vec<Device> {
    let mut names = Names::default();
    let mut usernames: HashMap<String, usize> = HashMap::new();
    let mut ports_used: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for d in &raw.device {
        let name = names.add(c, &d.name, "device");
        let by = || format!("device {:?}", d.name.get_ref());
        let Some(ty) = c.choice(&d.kind, "type", DeviceKind::NAMES, |s| DeviceKind::NAMES.iter().position(|n| *n == s)) else {
            continue;
        };
        let ty_name = DeviceKind::NAMES[ty];
        let allowed = [SIP_PHONE, CTI_PORT, ROUTE_POINT, FXS, FXO][ty];
        for (key, span) in present(d) {
            if !allowed.contains(&key) {
                c.err(span, Reason::NotForType { key, device_type: ty_name });
            }
        }
        let mut lines = Vec::new();
        match (&d.lines, ty_name) {
            (Some(l), "analog_fxo") => c.err(l.span(), Reason::NotForType { key: "lines", device_type: ty_name }),
            (Some(l), _) if l.get_ref().is_empty() => {
                c.err(l.span(), Reason::RequiredForType { key: "lines", device_type: ty_name })
            }
            (None, "analog_fxo") => {}
            (None, _) => c.err(d.name.span(), Reason::RequiredForType { key: "lines", device_type: ty_name }),
            (Some(l), _) => lines.extend(l.get_ref().iter().filter_map(|v| resolve_line(c, idx, v, by))),
        }
        let css = d.css.as_ref().map(|v| {
            css_names.need(c, v, "calling search space", by);
            v.get_ref().clone()
        });
        let pool = match &d.pool {
            Some(p) => {
                if !pools.contains(p.get_ref()) {
                    c.err(p.span(), Reason::Missing { what: "device pool", name: p.get_ref().clone(), by: by() });
                }
                p.get_ref().clone()
            }
            None => "default".to_string(),
        };
        let mut port = |want: PortKind| -> String {
            let Some(p) = &d.port else {
                c.err(d.name.span(), Reason::RequiredForType { key: "port", device_type: ty_name });
                return String::new();
            };
            let pn = p.get_ref().clone();
            if let Some(b) = board {
                match b.port(&pn) {
                    None => {
                        let available = b.ports.iter().map(|p| p.name.clone()).collect();
                        c.err(p.span(), Reason::BoardPortMissing { port: pn.clone(), board: b.name.clone(), available });
                    }
                    Some(bp) if bp.kind != want => {
                        c.err(p.span(), Reason::BoardPortKind { port: pn.clone(), kind: bp.kind.name(), device_type: ty_name })
                    }
                    Some(_) => {}
                }
            }
            if let Some(other) = ports_used.get(&pn) {
                c.err(p.span(), Reason::PortTaken { port: pn.clone(), device: other.clone() });
            } else {
                ports_used.insert(pn.clone(), d.name.get_ref().clone());
            }
            pn
        };
        let kind = match ty_name {
            "sip_phone" => {
                let username = d.username.as_ref().map_or_else(|| name.clone(), |u| c.name(u, "username"));
                let uspan = d.username.as_ref().map_or(d.name.span(), |u| u.span());
                if let Some(&first_line) = usernames.get(&username) {
                    c.err(uspan.clone(), Reason::Duplicate { what: "SIP username", name: username.clone(), first_line });
                } else {
                    usernames.insert(username.clone(), c.line_of(&uspan));
                }
                let password = match &d.password {
                    None => {
                        c.err(d.name.span(), Reason::RequiredForType { key: "password", device_type: ty_name });
                        Password::Generate
                    }
                    Some(p) if p.get_ref() == GENERATE => Password::Generate,
                    Some(p) => {
                        let mut who: Vec<&str> = vec![&username, &name];
                        who.extend(lines.iter().map(|l: &LineKey| l.dn.as_str()));
                        if let Some(why) = weakness(p.get_ref(), &who) {
                            c.err(p.span(), Reason::WeakPassword { name: format!("device {name:?}"), why });
                        }
                        Password::Plain(p.get_ref().clone())
                    }
                };
                DeviceKind::SipPhone { username, password }
            }
            "cti_port" => {
                let media = d.media.as_ref().and_then(|m| c.addr(m, "media"));
                if let (Some(a), Some(m)) = (media, &d.media) {
                    if a.port() % 2 != 0 {
                        c.err(m.span(), Reason::MustBeEven { key: "media port", value: i64::from(a.port()) });
                    }
                }
                let codec = d.codec.as_ref().and_then(|v| c.choice(v, "codec", Codec::NAMES, Codec::parse));
                DeviceKind::CtiPort { media, codec }
            }
            "cti_route_point" => DeviceKind::CtiRoutePoint {
                max_calls: c.int(&d.max_calls, "max_calls", 10, 1, 1000) as u32,
                answer_timeout_s: c.int(&d.answer_timeout_s, "answer_timeout_s", 10, 1, 300) as u32,
            },
            "analog_fxs" => DeviceKind::AnalogFxs { port: port(PortKind::Fxs), call_waiting: d.call_waiting.as_ref().is_none_or(|s| *s.get_ref()) },
            _ => {
                let port = port(PortKind::Fxo);
                let inbound = match &d.inbound_dn {
                    Some(v) => resolve_line(c, idx, v, by),
                    None => {
                        c.err(d.name.span(), Reason::RequiredForType { key: "inbound_dn", device_type: ty_name });
                        None
                    }
                };
                let inbound = inbound.unwrap_or(LineKey { dn: String::new(), partition: String::new() });
                let polarity_answer = d.polarity_answer.as_ref().is_none_or(|s| *s.get_ref());
                let answer_delay_s = c.int(&d.answer_delay_s, "answer_delay_s", 2, 0, 30) as u32;
                DeviceKind::AnalogFxo { port, inbound, polarity_answer, answer_delay_s }
            }
        };
        out.push(Device { name, kind, lines, css, pool, description: d.description.clone().unwrap_or_default() });
    }
    out
}

pub(super) fn patterns(c: &mut Ctx, raw: &RawConfig, parts: &Names, trunks: &[Trunk], devices: &[Device]) -> Vec<RoutePattern> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut out = Vec::new();
    for r in &raw.route_pattern {
        let text = r.pattern.get_ref();
        let pattern = match Pattern::parse(text) {
            Ok(p) => p,
            Err(why) => {
                c.err(r.pattern.span(), Reason::BadPattern { value: text.clone(), why });
                continue;
            }
        };
        let by = || format!("route pattern {text:?}");
        parts.need(c, &r.partition, "partition", by);
        let key = (text.clone(), r.partition.get_ref().clone());
        if let Some(&first_line) = seen.get(&key) {
            let name = format!("{}@{}", key.0, key.1);
            c.err(r.pattern.span(), Reason::Duplicate { what: "route pattern", name, first_line });
        } else {
            seen.insert(key, c.line_of(&r.pattern.span()));
        }
        let t = r.target.get_ref();
        let target = if let Some(n) = t.strip_prefix("trunk:") {
            if !trunks.iter().any(|x| x.name == n) {
                c.err(r.target.span(), Reason::Missing { what: "trunk", name: n.into(), by: by() });
            }
            RouteTarget::Trunk(n.into())
        } else if let Some(n) = t.strip_prefix("device:") {
            match devices.iter().find(|d| d.name == n) {
                None => c.err(r.target.span(), Reason::Missing { what: "device", name: n.into(), by: by() }),
                Some(d) if !matches!(d.kind, DeviceKind::AnalogFxo { .. }) => {
                    c.err(r.target.span(), Reason::WrongTarget { name: n.into(), device_type: d.kind.type_name() })
                }
                Some(_) => {}
            }
            RouteTarget::Device(n.into())
        } else {
            c.err(r.target.span(), Reason::NotOneOf { key: "target", value: t.clone(), allowed: &["trunk:NAME", "device:NAME"] });
            continue;
        };
        let prefix = r.prefix.as_ref().map_or_else(String::new, |p| {
            if !p.get_ref().is_empty() && !is_dn(p.get_ref()) {
                c.err(p.span(), Reason::BadNumber { what: "prefix", value: p.get_ref().clone() });
            }
            p.get_ref().clone()
        });
        out.push(RoutePattern {
            pattern,
            partition: r.partition.get_ref().clone(),
            target,
            strip_prefix: r.strip_prefix.as_ref().is_none_or(|s| *s.get_ref()),
            prefix,
            description: r.description.clone().unwrap_or_default(),
        });
    }
    out
}

fn reachable(number: &str, css: &CallingSearchSpace, lines: &[Line], patterns: &[RoutePattern]) -> bool {
    css.partitions.iter().any(|p| {
        lines.iter().any(|l| l.partition == *p && l.dn == number)
            || patterns.iter().any(|r| r.partition == *p && r.pattern.matches(number))
    })
}

/// Every forward target must be diallable through the forward's css (its own, or that
/// of each device the line is on).
pub(super) fn forwards(
    c: &mut Ctx,
    raw: &RawConfig,
    lines: &[Line],
    devices: &[Device],
    css: &[CallingSearchSpace],
    patterns: &[RoutePattern],
) {
    for (raw_line, line) in raw.line.iter().zip(lines) {
        let f = &raw_line.forward;
        let key = line.key();
        let spaces: Vec<&str> = match &line.forward.css {
            Some(s) => vec![s.as_str()],
            None => devices.iter().filter(|d| d.lines.contains(&key)).filter_map(|d| d.css.as_deref()).collect(),
        };
        let kinds = [
            ("all", &f.all),
            ("busy", &f.busy),
            ("no_answer", &f.no_answer),
            ("on_failure", &f.on_failure),
            ("unregistered", &f.unregistered),
        ];
        for (forward, v) in kinds {
            let Some(v) = v else { continue };
            if !is_dn(v.get_ref()) {
                continue;
            }
            if spaces.is_empty() {
                c.err(v.span(), Reason::NoForwardCss { line: key.to_string(), forward });
                continue;
            }
            for s in &spaces {
                let Some(space) = css.iter().find(|x| x.name == *s) else { continue };
                if !reachable(v.get_ref(), space, lines, patterns) {
                    let (line, number, css) = (key.to_string(), v.get_ref().clone(), s.to_string());
                    c.err(v.span(), Reason::Unreachable(Box::new(Unreachable { line, forward, number, css })));
                    break;
                }
            }
        }
    }
}

pub(super) fn app_users(c: &mut Ctx, raw: &RawConfig, devices: &[Device]) -> Vec<AppUser> {
    let mut names = Names::default();
    let mut out = Vec::new();
    for a in &raw.app_user {
        let name = names.add(c, &a.name, "app_user");
        let secret = parse_app_secret(a.secret.get_ref()).unwrap_or_else(|why| {
            c.err(a.secret.span(), Reason::BadSecret { name: name.clone(), why });
            AppSecret::Generate
        });
        let all = a.all_devices.as_ref().is_some_and(|b| *b.get_ref());
        let set = match (&a.devices, all) {
            (Some(d), true) => {
                c.err(d.span(), Reason::Exclusive { a: "devices", b: "all_devices = true" });
                DeviceSet::All
            }
            (_, true) => DeviceSet::All,
            (None, false) => DeviceSet::Only(Vec::new()),
            (Some(d), false) => {
                for v in d.get_ref() {
                    if !devices.iter().any(|x| x.name == *v.get_ref()) {
                        let by = format!("app_user {name:?}");
                        c.err(v.span(), Reason::Missing { what: "device", name: v.get_ref().clone(), by });
                    }
                }
                DeviceSet::Only(d.get_ref().iter().map(|v| v.get_ref().clone()).collect())
            }
        };
        out.push(AppUser { name, secret, devices: set, description: a.description.clone().unwrap_or_default() });
    }
    out
}
