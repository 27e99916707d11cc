//! The dial plan and what hangs off it: partitions, calling search spaces, lines and
//! their forwards, device pools, devices, route patterns, trunks and CTI app users.
//! Every cross-reference is checked here, including that each forward target can be
//! dialled through the forward's calling search space. No I/O.

use super::dialplan::{is_dn, split_line_ref};
use super::error::Reason;
use super::model::*;
use super::raw::*;
use super::secrets::GENERATE;
use super::validate::Ctx;
use crate::board::Board;
use std::collections::HashMap;

pub(super) struct Plan {
    pub partitions: Vec<Partition>,
    pub css: Vec<CallingSearchSpace>,
    pub lines: Vec<Line>,
    pub devices: Vec<Device>,
    pub pools: Vec<DevicePool>,
    pub patterns: Vec<RoutePattern>,
    pub trunks: Vec<Trunk>,
    pub app_users: Vec<AppUser>,
}

/// Names seen so far with the line they were defined on.
#[derive(Default)]
pub(super) struct Names(HashMap<String, usize>);

impl Names {
    pub(super) fn add(&mut self, c: &mut Ctx, v: &S<String>, what: &'static str) -> String {
        let name = c.name(v, what);
        let line = c.line_of(&v.span());
        if let Some(&first_line) = self.0.get(&name) {
            c.err(v.span(), Reason::Duplicate { what, name: name.clone(), first_line });
        } else {
            self.0.insert(name.clone(), line);
        }
        name
    }
    pub(super) fn has(&self, n: &str) -> bool {
        self.0.contains_key(n)
    }
    /// Reports `what` named by `by` if it is not defined.
    pub(super) fn need(&self, c: &mut Ctx, v: &S<String>, what: &'static str, by: impl FnOnce() -> String) -> bool {
        let ok = self.has(v.get_ref());
        if !ok {
            c.err(v.span(), Reason::Missing { what, name: v.get_ref().clone(), by: by() });
        }
        ok
    }
}

/// dn -> partitions holding it (with the line index).
pub(super) type DnIndex = HashMap<String, Vec<(String, usize)>>;

pub(super) fn resolve_line(c: &mut Ctx, idx: &DnIndex, v: &S<String>, by: impl Fn() -> String) -> Option<LineKey> {
    let (dn, part) = split_line_ref(v.get_ref());
    let found = idx.get(dn).map(Vec::as_slice).unwrap_or(&[]);
    match part {
        Some(p) if found.iter().any(|(fp, _)| fp == p) => Some(LineKey { dn: dn.into(), partition: p.into() }),
        None if found.len() == 1 => Some(LineKey { dn: dn.into(), partition: found[0].0.clone() }),
        None if found.len() > 1 => {
            let partitions = found.iter().map(|(p, _)| p.clone()).collect();
            c.err(v.span(), Reason::AmbiguousDn { dn: dn.into(), partitions });
            None
        }
        _ => {
            c.err(v.span(), Reason::Missing { what: "line", name: v.get_ref().clone(), by: by() });
            None
        }
    }
}

pub(super) fn plan(c: &mut Ctx, raw: &RawConfig, system: &SystemConfig, media: &MediaConfig, board: Option<&Board>) -> Plan {
    let mut partitions = Vec::new();
    let mut part_names = Names::default();
    for p in &raw.partition {
        let name = part_names.add(c, &p.name, "partition");
        partitions.push(Partition { name, description: p.description.clone().unwrap_or_default() });
    }

    let mut css = Vec::new();
    let mut css_names = Names::default();
    for s in &raw.calling_search_space {
        let name = css_names.add(c, &s.name, "calling search space");
        for p in &s.partitions {
            part_names.need(c, p, "partition", || format!("calling search space {name:?}"));
        }
        let parts = s.partitions.iter().map(|p| p.get_ref().clone()).collect();
        css.push(CallingSearchSpace { name, partitions: parts, description: s.description.clone().unwrap_or_default() });
    }

    let pools = pools(c, raw, system, media);
    let pool_names: Vec<String> = pools.iter().map(|p| p.name.clone()).collect();

    let mut lines = Vec::new();
    let mut idx: DnIndex = HashMap::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for l in &raw.line {
        let dn = l.dn.get_ref().clone();
        if !is_dn(&dn) {
            c.err(l.dn.span(), Reason::BadNumber { what: "line dn", value: dn.clone() });
        }
        let by = || format!("line {}", l.dn.get_ref());
        part_names.need(c, &l.partition, "partition", by);
        let key = (dn.clone(), l.partition.get_ref().clone());
        if let Some(&first_line) = seen.get(&key) {
            c.err(l.dn.span(), Reason::DuplicateDn { dn: dn.clone(), partition: key.1.clone(), first_line });
        } else {
            seen.insert(key.clone(), c.line_of(&l.dn.span()));
            idx.entry(dn.clone()).or_default().push((key.1.clone(), lines.len()));
        }
        let f = &l.forward;
        let mut target = |v: &OS<String>| -> Option<String> {
            let v = v.as_ref()?;
            if !is_dn(v.get_ref()) {
                c.err(v.span(), Reason::BadNumber { what: "forward target", value: v.get_ref().clone() });
            }
            Some(v.get_ref().clone())
        };
        let forward = Forward {
            all: target(&f.all),
            busy: target(&f.busy),
            no_answer: target(&f.no_answer),
            on_failure: target(&f.on_failure),
            unregistered: target(&f.unregistered),
            no_answer_timeout_s: c.int(&f.no_answer_timeout_s, "forward.no_answer_timeout_s", 20, 1, 300) as u32,
            css: f.css.as_ref().map(|v| {
                css_names.need(c, v, "calling search space", by);
                v.get_ref().clone()
            }),
        };
        let display_name = l.display_name.as_ref().map(|d| c.text_ok(d, "display_name"));
        lines.push(Line { dn, partition: key.1, display_name, forward });
    }

    let trunks = trunks(c, raw, &css_names, &idx);
    let devices = devices(c, raw, &idx, &css_names, &pool_names, board);
    let patterns = patterns(c, raw, &part_names, &trunks, &devices);
    forwards(c, raw, &lines, &devices, &css, &patterns);
    let app_users = app_users(c, raw, &devices);
    Plan { partitions, css, lines, devices, pools, patterns, trunks, app_users }
}

fn pools(c: &mut Ctx, raw: &RawConfig, system: &SystemConfig, media: &MediaConfig) -> Vec<DevicePool> {
    let mut names = Names::default();
    let mut out = Vec::new();
    for p in &raw.device_pool {
        let name = names.add(c, &p.name, "device pool");
        let codecs = p.codecs.as_ref().map_or_else(|| media.codecs.clone(), |v| c.codecs(v.get_ref(), "device_pool.codecs"));
        let country = p.country.as_ref().and_then(|v| c.choice(v, "device_pool.country", Country::NAMES, Country::parse));
        let description = p.description.clone().unwrap_or_default();
        out.push(DevicePool { name, codecs, country: country.unwrap_or(system.country), description });
    }
    if !names.has("default") {
        out.push(DevicePool {
            name: "default".into(),
            codecs: media.codecs.clone(),
            country: system.country,
            description: "implied".into(),
        });
    }
    out
}

fn host_port(s: &str) -> Option<(String, u16)> {
    let bracketed = s.starts_with('[');
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        if !after.is_empty() && !after.starts_with(':') {
            return None;
        }
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0)?,
        None => 5060,
    };
    let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let ok = bracketed || (!host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok));
    ok.then(|| (host.to_string(), port))
}

#[cfg(test)]
#[test]
fn trunk_addresses_are_host_or_ip_with_port_5060_by_default_and_bad_ones_are_refused() {
    assert_eq!(host_port("sip.itsp.example"), Some(("sip.itsp.example".into(), 5060)));
    assert_eq!(host_port("192.0.2.1:5080"), Some(("192.0.2.1".into(), 5080)));
    assert_eq!(host_port("[2001:db8::1]:5061"), Some(("2001:db8::1".into(), 5061)));
    for bad in ["", "fe80::1", "a..b", "host:0", "host:99999", "[::1]x", "bad_host", "h:"] {
        assert_eq!(host_port(bad), None, "{bad}");
    }
}

fn trunks(c: &mut Ctx, raw: &RawConfig, css_names: &Names, idx: &DnIndex) -> Vec<Trunk> {
    let mut names = Names::default();
    let mut out = Vec::new();
    for t in &raw.trunk {
        let name = names.add(c, &t.name, "trunk");
        let by = || format!("trunk {:?}", t.name.get_ref());
        let (host, port) = host_port(t.address.get_ref()).unwrap_or_else(|| {
            let value = t.address.get_ref().clone();
            c.err(t.address.span(), Reason::BadAddress { key: "trunk.address", value, example: "sip.example.net:5060" });
            (String::new(), 5060)
        });
        let transport = t.transport.as_ref().map_or(Some(Transport::Udp), |v| {
            c.choice(v, "trunk.transport", &["udp", "tcp"], |s| match s {
                "udp" => Some(Transport::Udp),
                "tcp" => Some(Transport::Tcp),
                _ => None,
            })
        });
        let register = t.register.as_ref().is_some_and(|r| *r.get_ref());
        if let (true, Some(r)) = (register, &t.register) {
            if t.username.is_none() {
                c.err(r.span(), Reason::Requires { key: "register = true", needs: "username" });
            } else if t.password.is_none() {
                c.err(r.span(), Reason::Requires { key: "register = true", needs: "password" });
            }
        }
        let password = t.password.as_ref().map(|p| {
            let why = if p.get_ref() == GENERATE {
                Some("\"generate\" cannot work here: the provider sets trunk passwords")
            } else if p.get_ref().is_empty() {
                Some("empty")
            } else {
                None
            };
            if let Some(why) = why {
                c.err(p.span(), Reason::WeakPassword { name: format!("trunk {name:?}"), why });
            }
            Password::Plain(p.get_ref().clone())
        });
        let css = t.css.as_ref().map(|v| {
            css_names.need(c, v, "calling search space", by);
            v.get_ref().clone()
        });
        let inbound = t.inbound_dn.as_ref().and_then(|v| resolve_line(c, idx, v, by));
        out.push(Trunk {
            name,
            host,
            port,
            transport: transport.unwrap_or(Transport::Udp),
            register,
            username: t.username.as_ref().map(|u| c.text_ok(u, "trunk.username")),
            password,
            css,
            inbound,
            description: t.description.clone().unwrap_or_default(),
        });
    }
    out
}

use super::validate_devices::{app_users, devices, forwards, patterns};
