//! Routing a dialled number through a calling search space: the partitions it may
//! search, in order; a directory number on this box beats a route pattern, and among
//! route patterns the most specific wins (fewest numbers matched, as CUCM's closest
//! match), the earlier partition breaking ties. Pure lookups over the configuration.

use crate::config::{Config, Device, LineKey, RouteTarget};

/// Where a dialled number goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A line on this box, with the devices it appears on.
    Line(LineKey),
    /// Out through a route pattern: the target and the number sent on.
    Route { pattern: String, target: RouteTarget, number: String },
}

/// Why a number could not be routed (the reason phrase of the 404/480).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoRoute {
    /// The caller has no calling search space.
    NoCss,
    /// Nothing in the searched partitions matches.
    Unallocated,
}

impl NoRoute {
    pub fn reason(&self) -> &'static str {
        match self {
            NoRoute::NoCss => "Not Found (caller has no calling search space)",
            NoRoute::Unallocated => "Not Found (no such number in the caller's calling search space)",
        }
    }
}

/// How many numbers a route pattern can match, as a comparable size: patterns with
/// `!` are unbounded; otherwise the product of each position's choices.
fn breadth(pattern: &str) -> (u8, u128) {
    if pattern.ends_with('!') {
        return (1, u128::MAX);
    }
    let mut n: u128 = 1;
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let choices: u128 = match b[i] {
            b'X' | b'x' => 10,
            b'[' => {
                let close = pattern[i..].find(']').map_or(b.len(), |c| c + i);
                let inner = &b[i + 1..close.min(b.len())];
                i = close;
                let (neg, inner) = match inner.first() {
                    Some(b'^') => (true, &inner[1..]),
                    _ => (false, inner),
                };
                let mut set = 0u16;
                let mut k = 0;
                while k < inner.len() {
                    if inner.get(k + 1) == Some(&b'-') && k + 2 < inner.len() {
                        for d in inner[k]..=inner[k + 2] {
                            set |= 1 << (d.wrapping_sub(b'0') & 15);
                        }
                        k += 3;
                    } else {
                        set |= 1 << (inner[k].wrapping_sub(b'0') & 15);
                        k += 1;
                    }
                }
                let c = u128::from((set & 0x3ff).count_ones());
                if neg {
                    10 - c
                } else {
                    c
                }
            }
            _ => 1,
        };
        n = n.saturating_mul(choices.max(1));
        i += 1;
    }
    (0, n)
}

/// Routes `dialled` through the partitions of calling search space `css`.
pub fn resolve(cfg: &Config, css: Option<&str>, dialled: &str) -> Result<Destination, NoRoute> {
    let css = css.and_then(|c| cfg.css(c)).ok_or(NoRoute::NoCss)?;
    for p in &css.partitions {
        if let Some(line) = cfg.line_in(dialled, p) {
            return Ok(Destination::Line(line.key()));
        }
    }
    let mut best: Option<(&crate::config::RoutePattern, (u8, u128), usize)> = None;
    for (rank, p) in css.partitions.iter().enumerate() {
        for rp in cfg.route_patterns.iter().filter(|r| &r.partition == p) {
            if !rp.pattern.matches(dialled) {
                continue;
            }
            let b = breadth(rp.pattern.as_str());
            if best.as_ref().is_none_or(|(_, bb, br)| b < *bb || (b == *bb && rank < *br)) {
                best = Some((rp, b, rank));
            }
        }
    }
    let (rp, _, _) = best.ok_or(NoRoute::Unallocated)?;
    Ok(Destination::Route {
        pattern: rp.pattern.as_str().to_string(),
        target: rp.target.clone(),
        number: rp.pattern.transform(dialled, rp.strip_prefix, &rp.prefix),
    })
}

/// The devices a line appears on (a shared line rings them all).
pub fn devices_of<'c>(cfg: &'c Config, line: &'c LineKey) -> impl Iterator<Item = &'c Device> + 'c {
    cfg.devices_of_line(line)
}

/// The calling search space forwards of `line` are routed with: the line's own
/// forward css, else that of the first device it is on.
pub fn forward_css<'c>(cfg: &'c Config, line: &'c LineKey) -> Option<&'c str> {
    let l = cfg.line(line)?;
    l.forward.css.as_deref().or_else(|| devices_of(cfg, line).find_map(|d| d.css.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breadth_orders_patterns_by_specificity() {
        assert!(breadth("1XXX") < breadth("XXXX"));
        assert!(breadth("1[2-4]XX") < breadth("1XXX"));
        assert!(breadth("9XXXXXXX") < breadth("9.!"));
        assert_eq!(breadth("1[^0-4]"), (0, 5));
        assert_eq!(breadth("2000"), (0, 1));
    }
}
