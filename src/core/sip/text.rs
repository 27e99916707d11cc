//! Lexical helpers of RFC 3261 §25.1: character classes, LWS, quoted strings,
//! comma splitting outside quotes and angle brackets, and `;name=value` parameter
//! lists. Pure functions over `&str`; owns no message state.

use serde::{Deserialize, Serialize};
use std::fmt;

/// `token` characters.
pub fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

const fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

/// `token_char` for every byte: the scanners test a byte per step.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = token_char(i as u8);
        i += 1;
    }
    t
};

/// An address as text in a stack buffer: `1.2.3.4`, `1.2.3.4:5060`, `[::1]:5060`.
/// The standard `Display` of addresses goes through the formatter's padding
/// machinery for every octet, a cost the box paid several times per message (Via,
/// Contact, From, keys); this writes the digits directly (IPv6 keeps the standard
/// text, in the same buffer).
#[derive(Clone, Copy)]
pub struct AddrText {
    buf: [u8; 56],
    len: u8,
}

impl AddrText {
    fn empty() -> AddrText {
        AddrText { buf: [0; 56], len: 0 }
    }
    fn push(&mut self, b: &[u8]) {
        let at = usize::from(self.len);
        let n = b.len().min(self.buf.len() - at);
        self.buf[at..at + n].copy_from_slice(&b[..n]);
        self.len = (at + n) as u8;
    }
    fn push_u16(&mut self, mut n: u16) {
        let mut d = [0u8; 5];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&d[i..]);
    }
    fn push_ip(&mut self, ip: std::net::IpAddr, brackets: bool) {
        match ip {
            std::net::IpAddr::V4(a) => {
                for (i, o) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b".");
                    }
                    self.push_u16(u16::from(o));
                }
            }
            std::net::IpAddr::V6(a) => {
                use std::fmt::Write as _;
                if brackets {
                    self.push(b"[");
                }
                let _ = write!(self, "{a}");
                if brackets {
                    self.push(b"]");
                }
            }
        }
    }
    /// `1.2.3.4` or `::1` (no brackets).
    pub fn ip(ip: std::net::IpAddr) -> AddrText {
        let mut t = AddrText::empty();
        t.push_ip(ip, false);
        t
    }
    /// `1.2.3.4:5060` or `[::1]:5060`, as `SocketAddr`'s `Display` writes it.
    pub fn socket(a: std::net::SocketAddr) -> AddrText {
        let mut t = AddrText::empty();
        t.push_ip(a.ip(), true);
        t.push(b":");
        t.push_u16(a.port());
        t
    }
    /// A port number.
    pub fn port(p: u16) -> AddrText {
        let mut t = AddrText::empty();
        t.push_u16(p);
        t
    }
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons, brackets and hex digits are ever pushed.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

impl fmt::Display for AddrText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Index of the first `c` (an ASCII byte) in `s`: for the short values of header
/// fields a plain scan beats `str::find`'s searcher.
pub fn find_byte(s: &str, c: u8) -> Option<usize> {
    s.as_bytes().iter().position(|&b| b == c)
}

/// `word` characters (Call-ID).
pub fn is_word(b: u8) -> bool {
    is_token(b)
        || matches!(b, b'(' | b')' | b'<' | b'>' | b':' | b'\\' | b'"' | b'/' | b'[' | b']' | b'?' | b'{' | b'}')
}

pub fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Length of the quoted string at the start of `s` (which begins with `"`),
/// closing quote included; `None` if unterminated.
pub fn quoted_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    debug_assert_eq!(b.first(), Some(&b'"'));
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The content of a quoted string (quotes stripped, quoted-pairs resolved).
pub fn unquote(q: &str) -> String {
    let inner = q.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(q);
    let mut out = String::with_capacity(inner.len());
    let mut esc = false;
    for c in inner.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// Wraps `s` in quotes, escaping `"` and `\`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A lexical error inside a header value (unterminated quote or bracket, stray byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unbalanced;

/// Splits a header value at commas that are outside quoted strings and `<...>`.
/// Elements are trimmed. `Err` on an unterminated quote or angle bracket.
pub fn split_commas(s: &str) -> Result<Vec<&str>, Unbalanced> {
    let mut out = Vec::new();
    each_comma(s, |e| out.push(e))?;
    Ok(out)
}

/// `split_commas` without the vector: calls `f` with each trimmed element, in order.
/// On `Err` some elements may already have been passed.
pub fn each_comma<'a>(s: &'a str, mut f: impl FnMut(&'a str)) -> Result<(), Unbalanced> {
    let b = s.as_bytes();
    let (mut start, mut i, mut angle) = (0, 0, false);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += quoted_len(&s[i..]).ok_or(Unbalanced)?;
                continue;
            }
            b'<' if !angle => angle = true,
            b'>' if angle => angle = false,
            b',' if !angle => {
                f(s[start..i].trim_matches(is_ws_char));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if angle {
        return Err(Unbalanced);
    }
    f(s[start..].trim_matches(is_ws_char));
    Ok(())
}

pub fn is_ws_char(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// One `name[=value]` parameter. The value is kept as received (quotes included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub name: super::msg::Value,
    pub value: Option<super::msg::Value>,
}

impl Param {
    pub fn new(name: &str, value: Option<&str>) -> Param {
        Param { name: name.into(), value: value.map(Into::into) }
    }
}

/// Looks a parameter up by case-insensitive name: `Some(None)` if present without a value.
pub fn find_param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name)).map(|p| p.value.as_deref())
}

/// Prints `;name=value` for each parameter.
pub struct DisplayParams<'a>(pub &'a [Param]);

impl fmt::Display for DisplayParams<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            f.write_str(";")?;
            f.write_str(&p.name)?;
            if let Some(v) = &p.value {
                f.write_str("=")?;
                f.write_str(v)?;
            }
        }
        Ok(())
    }
}

fn is_gen_value(b: u8) -> bool {
    is_token(b) || matches!(b, b':' | b'[' | b']')
}

/// Parses `*( SWS ";" SWS name [ SWS "=" SWS value ] )` covering all of `s`.
/// Values are tokens, hosts (with `:`, `[`, `]`) or quoted strings.
pub fn parse_params(s: &str) -> Result<Vec<Param>, Unbalanced> {
    let mut out = Vec::new();
    each_param(s, |name, value| out.push(Param::new(name, value)))?;
    Ok(out)
}

/// `parse_params` without building them: calls `f` with each name and raw value.
/// On `Err` some parameters may already have been passed.
pub fn each_param<'a>(s: &'a str, mut f: impl FnMut(&'a str, Option<&'a str>)) -> Result<(), Unbalanced> {
    let b = s.as_bytes();
    let mut i = skip_ws(b, 0);
    while i < b.len() {
        if b[i] != b';' {
            return Err(Unbalanced);
        }
        i = skip_ws(b, i + 1);
        let n0 = i;
        while i < b.len() && is_token(b[i]) {
            i += 1;
        }
        if i == n0 {
            return Err(Unbalanced);
        }
        let name = &s[n0..i];
        i = skip_ws(b, i);
        let mut value = None;
        if i < b.len() && b[i] == b'=' {
            i = skip_ws(b, i + 1);
            let v0 = i;
            if i < b.len() && b[i] == b'"' {
                i += quoted_len(&s[i..]).ok_or(Unbalanced)?;
            } else {
                while i < b.len() && is_gen_value(b[i]) {
                    i += 1;
                }
            }
            if i == v0 {
                return Err(Unbalanced);
            }
            value = Some(&s[v0..i]);
            i = skip_ws(b, i);
        }
        f(name, value);
    }
    Ok(())
}

/// The first parameter named `name` (case-insensitive) in a parameter list, read in
/// place: what `find_param(&parse_params(s)?, name)` gives, without building the list.
pub fn param_in<'a>(s: &'a str, name: &str) -> Option<Option<&'a str>> {
    let mut found = None;
    each_param(s, |n, v| {
        if found.is_none() && n.eq_ignore_ascii_case(name) {
            found = Some(v);
        }
    })
    .ok()?;
    found
}

/// Whether `parse_params` accepts `s`.
pub fn params_ok(s: &str) -> bool {
    each_param(s, |_, _| {}).is_ok()
}

pub fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// Parses a decimal number of at most `max` value; leading zeros allowed.
pub fn parse_u64(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_as_text_read_as_the_standard_display_writes_them() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        for a in [
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 0),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 5060),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)), 65535),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 9),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 5061),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff)), 65535),
        ] {
            assert_eq!(AddrText::socket(a).as_str(), a.to_string());
            assert_eq!(AddrText::ip(a.ip()).as_str(), a.ip().to_string());
            assert_eq!(AddrText::port(a.port()).as_str(), a.port().to_string());
        }
    }

    use super::*;
    #[test]
    fn commas_respect_quotes_and_angles() {
        assert_eq!(split_commas(r#""a,b" <sip:x;p=1,2>, c"#).unwrap(), vec![r#""a,b" <sip:x;p=1,2>"#, "c"]);
        assert!(split_commas(r#""a,b"#).is_err());
        assert!(split_commas("<sip:a").is_err());
    }
    #[test]
    fn params_parse_through_lws_and_quoted_semicolons_and_empty_ones_are_refused() {
        let p = parse_params(" ;   tag    = 1918181833n").unwrap();
        assert_eq!(p, vec![Param::new("tag", Some("1918181833n"))]);
        let p = parse_params(";lr;received=[2001:db8::9:255];x=\"a;b\"").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[2].value.as_deref(), Some("\"a;b\""));
        assert!(parse_params(";;").is_err());
        assert!(parse_params(";a=").is_err());
        assert!(parse_params("x").is_err());
    }
    #[test]
    fn quoting_round_trips() {
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(quote(r#"J Rosenberg \""#), r#""J Rosenberg \\\"""#);
        assert_eq!(parse_u64("0068", 255), Some(68));
        assert_eq!(parse_u64("300", 255), None);
        assert_eq!(parse_u64("36893488147419103232", u64::MAX), None);
    }
}
