//! Unit tests for the configuration: the embedded default, and one bad input per kind.

use super::*;

fn err(text: &str) -> String {
    match parse_str(text, "t.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn embedded_default_is_valid() {
    let c = embedded_default();
    assert_eq!(c.board.name, "sim");
    assert!(c.board.def.simulated);
    assert_eq!(c.lines.len(), 8);
    assert!(c.pool("default").is_some());
    assert!(c.sip.udp.is_some() && c.sip.tcp.is_some());
}
