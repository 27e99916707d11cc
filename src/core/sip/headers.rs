//! Typed header values: Via (RFC 3261 §20.42, rport RFC 3581), name-addr/addr-spec
//! (From, To, Contact, Route, Record-Route), CSeq, digest challenges and credentials,
//! media types, Reason (RFC 3326). Each parses from one unfolded value and prints back.
//! Owns no message; the accessors on `Message` pick the header lines.

use super::name::Method;
use super::text::{self, find_param, is_token, is_token_str, skip_ws, DisplayParams, Param};
use super::uri::{hostport_ok, split_hostport, Host, Uri};
use std::borrow::Cow;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One Via entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Via {
    /// Transport, upper-cased: `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ...
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

/// RFC 3261 §8.1.1.7 magic cookie.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

impl Via {
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }
    /// `received=` (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }
    /// `rport` (RFC 3581): `Some(None)` when present without a value (a request asking
    /// for it), `Some(Some(p))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }
    /// Whether the branch is an RFC 3261 one (cookie plus something unique).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.len() > BRANCH_COOKIE.len() && b.starts_with(BRANCH_COOKIE))
    }
    /// Sets or replaces a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set_param(&mut self.params, name, value);
    }

    /// Parses one Via entry (`SIP / 2.0 / UDP host:port;params`, LWS allowed).
    pub fn parse(s: &str) -> Option<Via> {
        let (transport, hostport, params) = via_parts(s)?;
        let (host, port) = split_hostport(&hostport)?;
        let params = text::parse_params(params).ok()?;
        Some(Via { transport: transport.to_ascii_uppercase(), host, port, params })
    }

    /// The branch and the sent-by of a Via entry, read in place (what `parse` then
    /// `branch`, `host` and `port` give, with the host as written); `None` where
    /// `parse` fails. For the transaction keys of every message.
    pub fn branch_and_sent_by(s: &str) -> Option<(Option<&str>, Cow<'_, str>)> {
        let (_, hostport, params) = via_parts(s)?;
        if !hostport_ok(&hostport) {
            return None;
        }
        let branch = match text::param_in(params, "branch") {
            Some(v) => v,
            None if text::params_ok(params) => None,
            None => return None,
        };
        Some((branch, hostport))
    }

    /// What a server makes of the top Via of a request it received (RFC 3261
    /// §18.2.1, RFC 3581 §4): `parse(s)`, then `set_param("received", received)` and,
    /// when `rport` is there, `set_param("rport", port)`, printed; written straight
    /// from the text, for every request. `None` where `parse` fails.
    pub fn stamped(s: &str, received: &str, port: u16) -> Option<String> {
        let (transport, hostport, params) = via_parts(s)?;
        let (host, host_port) = split_hostport(&hostport)?;
        if !text::params_ok(params) {
            return None;
        }
        let port = super::text::AddrText::port(port);
        let mut out = String::with_capacity(s.len() + received.len() + 24);
        out.push_str("SIP/2.0/");
        out.extend(transport.chars().map(|c| c.to_ascii_uppercase()));
        out.push(' ');
        let _ = fmt::Write::write_fmt(&mut out, format_args!("{host}"));
        if let Some(p) = host_port {
            out.push(':');
            out.push_str(super::text::AddrText::port(p).as_str());
        }
        let (mut received_done, mut rport_done) = (false, false);
        let _ = text::each_param(params, |name, value| {
            let value = if !received_done && name.eq_ignore_ascii_case("received") {
                received_done = true;
                Some(received)
            } else if !rport_done && name.eq_ignore_ascii_case("rport") {
                rport_done = true;
                Some(port.as_str())
            } else {
                value
            };
            out.push(';');
            out.push_str(name);
            if let Some(v) = value {
                out.push('=');
                out.push_str(v);
            }
        });
        if !received_done {
            out.push_str(";received=");
            out.push_str(received);
        }
        Some(out)
    }

    /// Whether `parse` accepts `s` (without building the entry).
    pub fn is_valid(s: &str) -> bool {
        via_parts(s).is_some_and(|(_, hostport, params)| hostport_ok(&hostport) && text::params_ok(params))
    }
}

/// A Via entry's transport, sent-by (LWS around the port colon removed) and the
/// parameters' text; the sent-by and parameters are not checked yet.
fn via_parts(s: &str) -> Option<(&str, Cow<'_, str>, &str)> {
    let b = s.as_bytes();
    let mut parts = [""; 3];
    let mut i = skip_ws(b, 0);
    for (n, part) in parts.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'/') {
                return None;
            }
            i = skip_ws(b, i + 1);
        }
        let t0 = i;
        while i < b.len() && is_token(b[i]) {
            i += 1;
        }
        *part = &s[t0..i];
        i = skip_ws(b, i);
    }
    if !parts[0].eq_ignore_ascii_case("SIP") || parts[1] != "2.0" || parts[2].is_empty() {
        return None;
    }
    let h0 = i;
    while i < b.len() && b[i] != b';' && !text::is_ws(b[i]) {
        i += 1;
    }
    let mut hostport = Cow::Borrowed(&s[h0..i]);
    // sent-by allows LWS around the port colon.
    let j = skip_ws(b, i);
    if b.get(j) == Some(&b':') {
        let k = skip_ws(b, j + 1);
        let p0 = k;
        let mut e = k;
        while e < b.len() && b[e].is_ascii_digit() {
            e += 1;
        }
        // (Only with LWS before the colon: without, the port is already in.)
        let mut joined = hostport.into_owned();
        joined.push(':');
        joined.push_str(&s[p0..e]);
        hostport = Cow::Owned(joined);
        i = e;
    }
    Some((parts[2], hostport, &s[i..]))
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SIP/2.0/")?;
        f.write_str(&self.transport)?;
        f.write_str(" ")?;
        fmt::Display::fmt(&self.host, f)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        fmt::Display::fmt(&DisplayParams(&self.params), f)
    }
}

fn set_param(params: &mut Vec<Param>, name: &str, value: Option<&str>) {
    match params.iter_mut().find(|p| p.name.eq_ignore_ascii_case(name)) {
        Some(p) => p.value = value.map(Into::into),
        None => params.push(Param::new(name, value)),
    }
}

/// `[display-name] <uri> *(;param)` or `addr-spec *(;param)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameAddr {
    /// Display name, unquoted.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (tag, expires, q, lr on Route is a URI param).
    pub params: Vec<Param>,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr { display: None, uri, params: Vec::new() }
    }
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set_param(&mut self.params, name, value);
    }
    /// Contact `expires` parameter; out-of-range values saturate (RFC 3261 §10.3).
    pub fn expires(&self) -> Option<u32> {
        self.param("expires").flatten().and_then(delta_seconds)
    }
    /// Contact `q` parameter in thousandths (0..=1000).
    pub fn q(&self) -> Option<u16> {
        let v = self.param("q").flatten()?;
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let i = text::parse_u64(int, 1)? as u16;
        let f = format!("{frac:0<3}").parse::<u16>().ok()?;
        (i * 1000 + f <= 1000).then_some(i * 1000 + f)
    }

    /// Parses one name-addr / addr-spec with its header parameters.
    pub fn parse(s: &str) -> Option<NameAddr> {
        let p = name_addr_parts(s)?;
        let display = match p.display {
            Display::None => None,
            Display::Quoted(q) => Some(text::unquote(q)),
            Display::Tokens(dn) => {
                let dn = dn.split(text::is_ws_char).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
                (!dn.is_empty()).then_some(dn)
            }
        };
        let uri = Uri::parse(p.uri)?;
        let params = text::parse_params(p.params).ok()?;
        Some(NameAddr { display, uri, params })
    }

    /// The `tag` parameter of an address header's value, read in place (what
    /// `parse(s)?.tag()` gives, without building the address).
    pub fn tag_in(s: &str) -> Option<&str> {
        let p = name_addr_parts(s)?;
        text::param_in(p.params, "tag").flatten()
    }

    /// Whether `parse` accepts `s` (without building the address).
    pub fn is_valid(s: &str) -> bool {
        name_addr_parts(s).is_some_and(|p| Uri::is_valid(p.uri) && text::params_ok(p.params))
    }
}

/// A display name as written, checked.
enum Display<'a> {
    None,
    /// A quoted string, quotes included.
    Quoted(&'a str),
    /// Tokens separated by LWS (maybe none at all).
    Tokens(&'a str),
}

/// A name-addr / addr-spec split into display name, URI text and parameters' text
/// (the URI and parameters not checked yet).
struct NameAddrParts<'a> {
    display: Display<'a>,
    uri: &'a str,
    params: &'a str,
}

fn name_addr_parts(s: &str) -> Option<NameAddrParts<'_>> {
    let s = s.trim_matches(text::is_ws_char);
    let b = s.as_bytes();
    let (display, uri_start) = if b.first() == Some(&b'"') {
        let q = text::quoted_len(s)?;
        let i = skip_ws(b, q);
        if b.get(i) != Some(&b'<') {
            return None;
        }
        (Display::Quoted(&s[..q]), i)
    } else if let Some(lt) = text::find_byte(s, b'<') {
        let dn = s[..lt].trim_matches(text::is_ws_char);
        if !dn.split(text::is_ws_char).filter(|w| !w.is_empty()).all(is_token_str) {
            return None;
        }
        (Display::Tokens(dn), lt)
    } else {
        // addr-spec: the URI ends at the first ';', and may not carry '?' or ','.
        let end = text::find_byte(s, b';').unwrap_or(s.len());
        let u = s[..end].trim_end_matches(text::is_ws_char);
        if u.bytes().any(|b| b == b'?' || b == b',') {
            return None;
        }
        return Some(NameAddrParts { display: Display::None, uri: u, params: &s[end..] });
    };
    let rest = &s[uri_start + 1..];
    let gt = text::find_byte(rest, b'>')?;
    Some(NameAddrParts { display, uri: &rest[..gt], params: &rest[gt + 1..] })
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{} ", text::quote(d))?;
        }
        write!(f, "<{}>{}", self.uri, DisplayParams(&self.params))
    }
}

/// A Contact header value: `*` or a list of addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Contact {
    Star,
    Addrs(Vec<NameAddr>),
}

/// `CSeq: number method`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq; the number must be below 2^31 (RFC 3261 §8.1.1.5).
    pub fn parse(s: &str) -> Option<CSeq> {
        let s = s.trim_matches(text::is_ws_char);
        let sp = s.find(text::is_ws_char)?;
        let seq = text::parse_u64(&s[..sp], (1 << 31) - 1)? as u32;
        let method = Method::parse(s[sp..].trim_start_matches(text::is_ws_char))?;
        Some(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// delta-seconds; values past u32 saturate, non-numbers are `None`.
pub fn delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim_matches(text::is_ws_char);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text::parse_u64(s, u64::from(u32::MAX)).map_or(u32::MAX, |v| v as u32))
}

/// A challenge or credentials (`WWW-Authenticate`, `Authorization`, ...): a scheme and
/// its comma-separated `name=value` parameters (RFC 3261 §25.1 digest grammar), read
/// in place from the header's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthParams<'a> {
    pub scheme: &'a str,
    /// Values as received (quoted strings keep their quotes).
    pub params: Vec<(&'a str, &'a str)>,
}

impl<'a> AuthParams<'a> {
    /// A parameter by case-insensitive name, unquoted.
    pub fn get(&self, name: &str) -> Option<String> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| {
            if v.starts_with('"') {
                text::unquote(v)
            } else {
                v.to_string()
            }
        })
    }
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    pub fn parse(s: &'a str) -> Option<AuthParams<'a>> {
        let s = s.trim_matches(text::is_ws_char);
        let sp = s.find(text::is_ws_char).unwrap_or(s.len());
        let scheme = &s[..sp];
        if !is_token_str(scheme) {
            return None;
        }
        let mut params = Vec::new();
        for part in text::split_commas(&s[sp..]).ok()? {
            if part.is_empty() {
                if params.is_empty() && s[sp..].trim_matches(text::is_ws_char).is_empty() {
                    break;
                }
                return None;
            }
            let (n, v) = part.split_once('=')?;
            let (n, v) = (n.trim_matches(text::is_ws_char), v.trim_matches(text::is_ws_char));
            let quoted_ok = v.starts_with('"') && text::quoted_len(v) == Some(v.len());
            if !is_token_str(n)
                || !(quoted_ok || v.bytes().all(|b| is_token(b) || b == b'/' || b == b':'))
                || v.is_empty()
            {
                return None;
            }
            params.push((n, v));
        }
        Some(AuthParams { scheme, params })
    }
}

impl fmt::Display for AuthParams<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme)?;
        for (i, (n, v)) in self.params.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { " " } else { ", " })?;
        }
        Ok(())
    }
}

/// `type/subtype;params` (Content-Type, Accept entries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaType {
    pub mtype: String,
    pub subtype: String,
    pub params: Vec<Param>,
}

impl MediaType {
    pub fn parse(s: &str) -> Option<MediaType> {
        let s = s.trim_matches(text::is_ws_char);
        let end = s.find(';').unwrap_or(s.len());
        let (t, st) = s[..end].split_once('/')?;
        let (t, st) = (t.trim_matches(text::is_ws_char), st.trim_matches(text::is_ws_char));
        if !is_token_str(t) || !is_token_str(st) {
            return None;
        }
        let params = text::parse_params(&s[end..]).ok()?;
        Some(MediaType { mtype: t.to_string(), subtype: st.to_string(), params })
    }
    /// Case-insensitive `type/subtype` comparison; `*` matches anything.
    pub fn is(&self, mtype: &str, subtype: &str) -> bool {
        (self.mtype == "*" || self.mtype.eq_ignore_ascii_case(mtype))
            && (self.subtype == "*" || self.subtype.eq_ignore_ascii_case(subtype))
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.mtype, self.subtype, DisplayParams(&self.params))
    }
}

/// `Reason: SIP ;cause=200 ;text="Call completed elsewhere"` (RFC 3326).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub protocol: String,
    pub params: Vec<Param>,
}

impl Reason {
    pub fn parse(s: &str) -> Option<Reason> {
        let s = s.trim_matches(text::is_ws_char);
        let end = s.find(|c: char| c == ';' || text::is_ws_char(c)).unwrap_or(s.len());
        let protocol = &s[..end];
        if !is_token_str(protocol) {
            return None;
        }
        Some(Reason { protocol: protocol.to_string(), params: text::parse_params(&s[end..]).ok()? })
    }
    pub fn cause(&self) -> Option<u16> {
        find_param(&self.params, "cause").flatten().and_then(|c| c.parse().ok())
    }
    pub fn text(&self) -> Option<String> {
        find_param(&self.params, "text").flatten().map(text::unquote)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.protocol, DisplayParams(&self.params))
    }
}

#[cfg(test)]
mod tests {
    /// The in-place readers and writers give what parsing the whole value gives.
    #[test]
    fn in_place_readers_agree_with_the_parsed_header() {
        for v in [
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
            "SIP/2.0/udp host.example.com;rport;branch=z9hG4bKx;received=198.51.100.9",
            "SIP / 2.0 / TCP [2001:db8::1]:5061 ;branch = z9hG4bK-a ;RPORT=7;Received=1.2.3.4;received=x",
            "SIP/2.0/UDP 192.0.2.1;maddr=192.0.2.9;ttl=16",
            "SIP/2.0/UDP 192.0.2.1;branch=\"quoted\"",
            "SIP/2.0/UDP 192.0.2.1;branch=",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP 192.0.2.1:99999;branch=z9hG4bK1",
        ] {
            let parsed = Via::parse(v);
            let expected = parsed.clone().map(|mut p| {
                p.set_param("received", Some("192.0.2.200"));
                if p.rport().is_some() {
                    p.set_param("rport", Some("40000"));
                }
                p.to_string()
            });
            assert_eq!(Via::stamped(v, "192.0.2.200", 40000), expected, "{v}");
            let branch = parsed.as_ref().map(|p| p.branch().map(str::to_string));
            assert_eq!(Via::branch_and_sent_by(v).map(|(b, _)| b.map(str::to_string)), branch, "{v}");
        }
        for v in [
            "\"A;tag=no\" <sip:a@example.com;tag=uri>;tag=yes",
            "<sip:a@example.com>;TAG=1;tag=2",
            "sip:a@example.com;tag=3",
            "Bob <sip:b@example.com>",
            "<sip:a@example.com",
            "sip:a@example.com;tag",
        ] {
            let tag = NameAddr::parse(v).and_then(|n| n.tag().map(str::to_string));
            assert_eq!(NameAddr::tag_in(v).map(str::to_string), tag, "{v}");
        }
    }

    use super::*;

    #[test]
    fn via_parses_through_lws_reads_its_params_prints_back_and_refuses_empty_params() {
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.transport.as_str(), v.branch()), ("UDP", Some("390skdjuw")));
        let v = Via::parse("SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239").unwrap();
        assert_eq!(v.host, Host::V4("192.168.255.111".parse().unwrap()));
        assert_eq!(v.branch(), Some("z9hG4bK30239"));
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;rport;received=2001:db8::9:255")
            .unwrap();
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("2001:db8::9:255"));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;rport;received=2001:db8::9:255"
        );
        let v = Via::parse("SIP/2.0/tcp host : 5070 ;rport=1234").unwrap();
        assert_eq!((v.port, v.rport()), (Some(5070), Some(Some(1234))));
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;,;,,").is_none());
        assert!(Via::parse("SIP/3.0/UDP h").is_none());
        assert!(!Via::parse("SIP/2.0/UDP h;branch=z9hG4bK").unwrap().has_rfc3261_branch());
    }

    #[test]
    fn name_addrs_parse_quoted_names_and_param_placement_and_refuse_malformed_forms() {
        let a = NameAddr::parse(r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#).unwrap();
        assert_eq!(a.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(a.tag(), Some("98asjd8"));
        let a = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display.as_deref(), Some("caller"));
        let a = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert_eq!(a.param("unknownparam"), Some(None));
        assert!(a.uri.as_sip().unwrap().params.is_empty());
        let a = NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert!(a.params.is_empty());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_none());
        assert!(NameAddr::parse("< sip:t.watson@example.org >").is_none());
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_none());
        assert!(NameAddr::parse("\"Joe\" <sip:joe@example.org>;;;;").is_none());
        let a = NameAddr::parse("<sip:a@b>;expires=280297596632815;q=0.33").unwrap();
        assert_eq!((a.expires(), a.q()), (Some(u32::MAX), Some(330)));
        assert_eq!(a.to_string(), "<sip:a@b>;expires=280297596632815;q=0.33");
    }

    #[test]
    fn cseq_parses_leading_zeros_and_refuses_numbers_of_2_pow_31_or_more() {
        assert_eq!(CSeq::parse("0009 INVITE"), Some(CSeq { seq: 9, method: Method::Invite }));
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_none());
        assert!(CSeq::parse("2147483648 INVITE").is_none());
    }

    #[test]
    fn auth_params_of_any_scheme_read_case_insensitively_with_quotes_removed() {
        let a = AuthParams::parse(r#"Digest realm="atlanta.example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", qop="auth,auth-int", algorithm=MD5, stale=FALSE"#).unwrap();
        assert!(a.is_digest());
        assert_eq!(a.get("qop").as_deref(), Some("auth,auth-int"));
        assert_eq!(a.get("ALGORITHM").as_deref(), Some("MD5"));
        let a = AuthParams::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(a.get("opaque-data").as_deref(), Some("here"));
    }

    #[test]
    fn a_media_type_with_lws_and_params_matches_case_insensitively() {
        let m = MediaType::parse("application/sdp ; charset=utf-8").unwrap();
        assert!(m.is("Application", "SDP"));
    }

    #[test]
    fn a_reason_header_yields_its_cause_and_unquoted_text() {
        let r = Reason::parse(r#"SIP ;cause=200 ;text="Call completed elsewhere""#).unwrap();
        assert_eq!((r.cause(), r.text().as_deref()), (Some(200), Some("Call completed elsewhere")));
    }
}
