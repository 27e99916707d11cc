//! Dial plan syntax: directory numbers, "dn@partition" references, and CUCM-style route
//! patterns (`X`, `[1-5]`, `!`, `.`) with their matching and digit stripping. Pure
//! functions; the call engine reuses `Pattern` to route.

use std::fmt;

/// Longest directory number or dialled string (characters).
pub const MAX_DIGITS: usize = 32;
/// Longest route pattern (characters).
pub const MAX_PATTERN: usize = 64;

/// A directory number: optional leading '+', then 1-32 of `0-9 * #`.
pub fn is_dn(s: &str) -> bool {
    let body = s.strip_prefix('+').unwrap_or(s);
    !body.is_empty() && s.len() <= MAX_DIGITS && body.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

/// Splits "dn" or "dn@partition".
pub fn split_line_ref(s: &str) -> (&str, Option<&str>) {
    match s.split_once('@') {
        Some((dn, p)) => (dn, Some(p)),
        None => (s, None),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    /// One literal character (0-9, *, #, or a leading +).
    Lit(u8),
    /// `X`: any digit 0-9.
    Any,
    /// `[...]`: a set of digits (bit i = digit i).
    Class(u16),
    /// `!`: one or more digits, last element only.
    Rest,
    /// `.`: matches nothing; marks the end of the prefix `strip_prefix` drops.
    Dot,
}

/// A compiled route pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    elems: Vec<Elem>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn digit(b: u8) -> Option<u16> {
    b.is_ascii_digit().then(|| u16::from(b - b'0'))
}

impl Pattern {
    /// Compiles a pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Pattern, &'static str> {
        if text.is_empty() {
            return Err("is empty");
        }
        if text.len() > MAX_PATTERN {
            return Err("is longer than 64 characters");
        }
        let b = text.as_bytes();
        let mut elems = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match c {
                b'0'..=b'9' | b'*' | b'#' => elems.push(Elem::Lit(c)),
                b'+' if i == 0 => elems.push(Elem::Lit(c)),
                b'+' => return Err("'+' is allowed only at the start"),
                b'X' | b'x' => elems.push(Elem::Any),
                b'!' if i + 1 == b.len() => elems.push(Elem::Rest),
                b'!' => return Err("'!' must be the last character"),
                b'.' if elems.contains(&Elem::Dot) => return Err("has more than one '.'"),
                b'.' if elems.is_empty() => return Err("'.' needs digits before it"),
                b'.' => elems.push(Elem::Dot),
                b'[' => {
                    let close = text[i..].find(']').ok_or("has '[' without ']'")? + i;
                    elems.push(Elem::Class(parse_class(&b[i + 1..close])?));
                    i = close;
                }
                b']' => return Err("has ']' without '['"),
                _ => return Err("may hold only digits, '*', '#', a leading '+', 'X', '[...]', '!' and '.'"),
            }
            i += 1;
        }
        if elems.last() == Some(&Elem::Dot) {
            return Err("'.' needs digits after it");
        }
        Ok(Pattern { text: text.to_string(), elems })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a complete dialled number matches the whole pattern.
    pub fn matches(&self, number: &str) -> bool {
        let n = number.as_bytes();
        let mut j = 0;
        for e in &self.elems {
            match e {
                Elem::Dot => continue,
                Elem::Rest => return j < n.len() && n[j..].iter().all(u8::is_ascii_digit),
                _ if j >= n.len() => return false,
                Elem::Lit(c) if n[j] == *c => {}
                Elem::Any if n[j].is_ascii_digit() => {}
                Elem::Class(set) if digit(n[j]).is_some_and(|d| set & (1 << d) != 0) => {}
                _ => return false,
            }
            j += 1;
        }
        j == n.len()
    }

    /// Whether some number longer than `prefix` that starts with it matches (the
    /// prefix is not yet all a caller would dial).
    pub fn could_extend(&self, prefix: &str) -> bool {
        let n = prefix.as_bytes();
        for (j, e) in self.elems.iter().filter(|e| **e != Elem::Dot).enumerate() {
            if j == n.len() {
                // The prefix is used up with an element left: one more digit fits.
                return true;
            }
            match e {
                Elem::Rest => return n[j..].iter().all(u8::is_ascii_digit),
                Elem::Lit(c) if n[j] == *c => {}
                Elem::Any if n[j].is_ascii_digit() => {}
                Elem::Class(set) if digit(n[j]).is_some_and(|d| set & (1 << d) != 0) => {}
                _ => return false,
            }
        }
        false
    }

    /// Number of dialled characters before the `.` (0 without one).
    pub fn pre_dot_len(&self) -> usize {
        self.elems.iter().position(|e| *e == Elem::Dot).unwrap_or(0)
    }

    /// The number sent on: pre-dot digits dropped if `strip_prefix`, then `prefix` added.
    /// Call only with a number that `matches`.
    pub fn transform(&self, number: &str, strip_prefix: bool, prefix: &str) -> String {
        let cut = if strip_prefix { self.pre_dot_len().min(number.len()) } else { 0 };
        let mut out = String::with_capacity(prefix.len() + number.len());
        out.push_str(prefix);
        out.push_str(number.get(cut..).unwrap_or(""));
        out
    }
}

fn parse_class(inner: &[u8]) -> Result<u16, &'static str> {
    let (neg, inner) = match inner.first() {
        Some(b'^') => (true, &inner[1..]),
        _ => (false, inner),
    };
    if inner.is_empty() {
        return Err("has an empty '[]'");
    }
    let mut set = 0u16;
    let mut k = 0;
    while k < inner.len() {
        let lo = digit(inner[k]).ok_or("'[...]' may hold only digits, ranges like 1-5 and a leading '^'")?;
        if inner.get(k + 1) == Some(&b'-') {
            let hi = inner.get(k + 2).and_then(|&c| digit(c)).ok_or("has a range in '[...]' without an end digit")?;
            if hi < lo {
                return Err("has a backwards range in '[...]'");
            }
            for d in lo..=hi {
                set |= 1 << d;
            }
            k += 3;
        } else {
            set |= 1 << lo;
            k += 1;
        }
    }
    if neg {
        set = !set & 0x3ff;
    }
    if set == 0 {
        return Err("has a '[...]' that matches no digit");
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_could_extend_while_a_longer_number_matches() {
        let p = Pattern::parse("9.1XXX").unwrap();
        assert!(p.could_extend(""));
        assert!(p.could_extend("9"));
        assert!(p.could_extend("91"));
        assert!(p.could_extend("9123"));
        assert!(!p.could_extend("91234"), "complete: nothing longer matches");
        assert!(!p.could_extend("8"));
        let r = Pattern::parse("0!").unwrap();
        assert!(r.could_extend("0"));
        assert!(r.could_extend("0123"));
        assert!(!r.could_extend("0#"));
        assert!(!r.could_extend("1"));
    }

    #[test]
    fn directory_numbers_are_1_to_32_digits_star_or_hash_with_an_optional_leading_plus() {
        for ok in ["1001", "+4930123", "*67", "#1", "0"] {
            assert!(is_dn(ok), "{ok}");
        }
        for bad in ["", "+", "12a", "1 2", "++1", "1+2", "123456789012345678901234567890123"] {
            assert!(!is_dn(bad), "{bad}");
        }
    }

    #[test]
    fn patterns_match_wildcards_and_classes_and_transform_by_discarding_or_prefixing() {
        let p = Pattern::parse("9.!").unwrap();
        assert!(p.matches("90123456"));
        assert!(!p.matches("9"));
        assert!(!p.matches("80123"));
        assert_eq!(p.transform("90123456", true, ""), "0123456");
        assert_eq!(p.transform("90123456", false, "+49"), "+4990123456");
        let q = Pattern::parse("1[0-2]X[^5]").unwrap();
        assert!(q.matches("1234"));
        assert!(!q.matches("1334"));
        assert!(!q.matches("1235"));
        assert!(!q.matches("123"));
        assert!(!q.matches("12345"));
        let e = Pattern::parse("+1.XXX").unwrap();
        assert!(e.matches("+1555"));
        assert_eq!(e.transform("+1555", true, "00"), "00555");
    }

    #[test]
    fn patterns_with_misplaced_dots_or_bangs_or_bad_classes_or_characters_are_refused() {
        for bad in ["", "9..!", ".9", "9.", "!9", "9[", "9]", "9[]", "9[5-1]", "9[a]", "9Y", "1+", "9[^0-9]"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_line_ref_splits_at_the_at_sign_into_dn_and_optional_partition() {
        assert_eq!(split_line_ref("1001@internal"), ("1001", Some("internal")));
        assert_eq!(split_line_ref("1001"), ("1001", None));
    }
}
