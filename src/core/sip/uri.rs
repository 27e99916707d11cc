//! URIs: sip/sips (RFC 3261 §19.1, IPv6 references per RFC 5118), tel (RFC 3966), and
//! any other absolute URI kept opaque so the engine can answer 416. Components are
//! stored as received (escapes intact) so printing reproduces them.

use super::text::{find_byte, find_param, is_token, DisplayParams, Param};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use super::msg::Value;

/// A host: domain name, IPv4 address or IPv6 reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Host {
    Domain(Value),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host {
    /// Parses a host: `[v6]`, dotted IPv4, or a domain name (letters, digits, `-._`).
    pub fn parse(s: &str) -> Option<Host> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']')?;
            return parse_v6(inner).map(Host::V6);
        }
        if !domain_chars_ok(s) {
            return None;
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            if let Ok(a) = s.parse() {
                return Some(Host::V4(a));
            }
        }
        Some(Host::Domain(s.into()))
    }

    /// Whether `parse` accepts `s` (without building the host).
    pub fn is_valid(s: &str) -> bool {
        match s.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').is_some_and(|i| parse_v6(i).is_some()),
            None => domain_chars_ok(s),
        }
    }

    /// Case-insensitive comparison for domains, exact for addresses.
    pub fn matches(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }
}

fn domain_chars_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// IPv6 text, tolerating the three-colon form of the RFC 3261 ABNF bug (RFC 5118 §4.10).
pub fn parse_v6(s: &str) -> Option<Ipv6Addr> {
    s.parse().ok().or_else(|| if s.contains(":::") { s.replacen(":::", "::", 1).parse().ok() } else { None })
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => f.write_str(super::text::AddrText::ip(std::net::IpAddr::V4(*a)).as_str()),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// `sip:` or `sips:` URI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipUri {
    pub secure: bool,
    pub user: Option<Value>,
    pub password: Option<Value>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
    /// `?name=value&...`, as received.
    pub headers: Option<Value>,
}

impl SipUri {
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            secure: false,
            user: user.map(Value::from),
            password: None,
            host,
            port,
            params: Vec::new(),
            headers: None,
        }
    }
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
    /// The user part with %-escapes resolved (RFC 3261 §19.1.4 comparison form).
    pub fn user_unescaped(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(unescape)
    }
}

/// `tel:` URI (RFC 3966): the number with its visual separators, and parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelUri {
    pub number: String,
    pub params: Vec<Param>,
}

/// Any URI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// Another scheme, kept opaque (`scheme:rest`).
    Other {
        scheme: String,
        rest: String,
    },
}

impl Uri {
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// Parses an absolute URI. `None` if it is not one.
    pub fn parse(s: &str) -> Option<Uri> {
        let (scheme, rest) = split_scheme(s)?;
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            sip_parts(rest)?.build(scheme.len() == 4).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            parse_tel(rest).map(Uri::Tel)
        } else {
            Some(Uri::Other { scheme: scheme.to_string(), rest: rest.to_string() })
        }
    }

    /// Whether `parse` accepts `s` (without building the URI).
    pub fn is_valid(s: &str) -> bool {
        let Some((scheme, rest)) = split_scheme(s) else { return false };
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            sip_parts(rest).is_some()
        } else if scheme.eq_ignore_ascii_case("tel") {
            tel_parts(rest).is_some()
        } else {
            true
        }
    }
}

/// `scheme` and what follows its colon, both checked for the characters a URI may
/// carry (and, but for opaque schemes, for well-formed %-escapes).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let colon = find_byte(s, b':')?;
    let (scheme, rest) = (&s[..colon], &s[colon + 1..]);
    let sb = scheme.as_bytes();
    if sb.is_empty()
        || !sb[0].is_ascii_alphabetic()
        || !sb.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    if rest.is_empty() || !rest.bytes().all(is_uric) || !valid_escapes(rest) && !scheme_is_opaque(scheme) {
        return None;
    }
    Some((scheme, rest))
}

fn scheme_is_opaque(scheme: &str) -> bool {
    !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") || scheme.eq_ignore_ascii_case("tel"))
}

/// Characters a URI may carry on the wire (no space, control, `<>"`, or non-ASCII).
fn is_uric(b: u8) -> bool {
    URIC[usize::from(b)]
}

static URIC: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'{' | b'}' | b'|' | b'\\' | b'^');
        i += 1;
    }
    t
};

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Resolves %-escapes (input already validated).
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(h(b[i + 1]) << 4 | h(b[i + 2]));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn is_user(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}
fn is_password(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b',')
}
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')')
}
fn is_paramchar(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}
fn is_hchar(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&')
}

/// A sip/sips URI after its scheme, checked and split but not yet owned.
struct SipParts<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
    /// `;name[=value]...` as received (checked), or empty.
    params: &'a str,
    headers: Option<&'a str>,
}

impl SipParts<'_> {
    fn build(&self, secure: bool) -> Option<SipUri> {
        let mut params = Vec::new();
        if !each_uri_param(self.params, is_paramchar, |n, v| params.push(Param::new(n, v))) {
            return None;
        }
        Some(SipUri {
            secure,
            user: self.user.map(Value::from),
            password: self.password.map(Value::from),
            host: Host::parse(self.host)?,
            port: self.port,
            params,
            headers: self.headers.map(Value::from),
        })
    }
}

fn sip_parts(rest: &str) -> Option<SipParts<'_>> {
    let (userinfo, after) = match find_byte(rest, b'@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match find_byte(ui, b':') {
                Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                None => (ui, None),
            };
            if u.is_empty() || !u.bytes().all(is_user) || !p.is_none_or(|p| p.bytes().all(is_password)) {
                return None;
            }
            (Some(u), p)
        }
    };
    let (hp_params, headers) = match find_byte(after, b'?') {
        Some(q) => (&after[..q], Some(&after[q + 1..])),
        None => (after, None),
    };
    if let Some(h) = headers {
        if !h.bytes().all(is_hchar) {
            return None;
        }
    }
    let (hostport, params) = match find_byte(hp_params, b';') {
        Some(sc) => (&hp_params[..sc], &hp_params[sc..]),
        None => (hp_params, ""),
    };
    let (host, port) = hostport_parts(hostport)?;
    if !Host::is_valid(host) || !each_uri_param(params, is_paramchar, |_, _| {}) {
        return None;
    }
    Some(SipParts { user, password, host, port, params, headers })
}

/// `host[:port]` with bracketed IPv6.
pub fn split_hostport(s: &str) -> Option<(Host, Option<u16>)> {
    let (host, port) = hostport_parts(s)?;
    Some((Host::parse(host)?, port))
}

/// Whether `split_hostport` accepts `s`.
pub fn hostport_ok(s: &str) -> bool {
    hostport_parts(s).is_some_and(|(h, _)| Host::is_valid(h))
}

/// The host text (not yet checked) and the port of `host[:port]`.
pub(crate) fn hostport_parts(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = find_byte(s, b']')?;
        let tail = &s[end + 1..];
        let port = if tail.is_empty() { None } else { Some(tail.strip_prefix(':')?) };
        (&s[..=end], port)
    } else {
        match find_byte(s, b':') {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(super::text::parse_u64(p, 65535)? as u16),
    };
    Some((host, port))
}

/// Walks a `;name[=value]` list inside a URI (no whitespace), calling `f` with each
/// parameter; `false` (maybe after some calls) if one is malformed.
fn each_uri_param<'a>(s: &'a str, ok: fn(u8) -> bool, mut f: impl FnMut(&'a str, Option<&'a str>)) -> bool {
    if s.is_empty() {
        return true;
    }
    for part in s[1..].split(';') {
        let (name, value) = match find_byte(part, b'=') {
            Some(e) => (&part[..e], Some(&part[e + 1..])),
            None => (part, None),
        };
        if name.is_empty() || !name.bytes().all(ok) || value.is_some_and(|v| v.is_empty() || !v.bytes().all(ok)) {
            return false;
        }
        f(name, value);
    }
    true
}

fn is_tel_paramchar(b: u8) -> bool {
    is_paramchar(b) || is_token(b)
}

/// The number and the (checked) parameters of a tel URI.
fn tel_parts(rest: &str) -> Option<(&str, &str)> {
    let (number, params) = match find_byte(rest, b';') {
        Some(sc) => (&rest[..sc], &rest[sc..]),
        None => (rest, ""),
    };
    let ok = |b: u8| b.is_ascii_hexdigit() || matches!(b, b'*' | b'#' | b'-' | b'.' | b'(' | b')');
    let digits = number.strip_prefix('+').unwrap_or(number);
    if digits.is_empty() || !digits.bytes().all(ok) {
        return None;
    }
    each_uri_param(params, is_tel_paramchar, |_, _| {}).then_some((number, params))
}

fn parse_tel(rest: &str) -> Option<TelUri> {
    let (number, raw) = tel_parts(rest)?;
    let mut params = Vec::new();
    each_uri_param(raw, is_tel_paramchar, |n, v| params.push(Param::new(n, v)));
    Some(TelUri { number: number.to_string(), params })
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        fmt::Display::fmt(&self.host, f)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        fmt::Display::fmt(&DisplayParams(&self.params), f)?;
        if let Some(h) = &self.headers {
            f.write_str("?")?;
            f.write_str(h)?;
        }
        Ok(())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => fmt::Display::fmt(u, f),
            Uri::Tel(t) => write!(f, "tel:{}{}", t.number, DisplayParams(&t.params)),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s) {
            Some(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn a_sips_uri_yields_user_password_v6_host_port_params_and_headers_and_prints_back() {
        let u = sip("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x&h=y");
        assert!(u.secure);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers.as_deref(), Some("subject=x&h=y"));
        assert_eq!(u.to_string(), "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x&h=y");
    }

    #[test]
    fn unusual_user_and_password_characters_parse_and_bad_escapes_are_refused() {
        let u = sip("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(u.user.as_deref(), Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"));
        assert_eq!(u.password.as_deref(), Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"));
        assert_eq!(sip("sip:%75se%72@example.com").user_unescaped(), Some(b"user".to_vec()));
        assert_eq!(sip("sip:null-%00-null@example.com").user_unescaped(), Some(b"null-\0-null".to_vec()));
        assert!(Uri::parse("sip:a%zz@example.com").is_none());
        assert!(Uri::parse("sip:a%4@example.com").is_none());
    }

    #[test]
    fn ipv6_hosts_need_brackets_and_only_a_port_after_the_bracket_is_a_port() {
        assert!(Uri::parse("sip:2001:db8::10").is_none());
        let u = sip("sip:[2001:db8::10:5070]");
        assert_eq!(u.port, None);
        let u = sip("sip:[2001:db8::10]:5070");
        assert_eq!((u.host, u.port), (Host::V6("2001:db8::10".parse().unwrap()), Some(5070)));
        let u = sip("sip:user@[2001:db8:::192.0.2.1]");
        assert_eq!(u.host, Host::V6("2001:db8::192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn other_schemes_parse_and_brackets_trailing_semicolons_spaces_or_bad_ports_are_refused() {
        assert_eq!(Uri::parse("tel:+1-201-555-0123;phone-context=x").unwrap().scheme(), "tel");
        assert_eq!(Uri::parse("soap.beep://192.0.2.103:3002").unwrap().scheme(), "soap.beep");
        assert!(Uri::parse("<sip:user@example.com>").is_none());
        assert!(Uri::parse("sip:user@example.com;").is_none());
        assert!(Uri::parse(" sip:user@example.com").is_none());
        assert!(Uri::parse("sip:user@exa mple.com").is_none());
        assert!(Uri::parse("sip:user@host:99999").is_none());
    }
}
