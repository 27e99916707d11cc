//! Unit tests for the configuration: the embedded default, and one bad input per kind.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests write their own config files

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

const BASE: &str = r#"
[[partition]]
name = "internal"

[[calling_search_space]]
name = "all"
partitions = ["internal"]

[[line]]
dn = "1001"
partition = "internal"

[[device]]
name = "p1"
type = "sip_phone"
password = "k7Vq2pLm9x"
lines = ["1001"]
css = "all"
"#;

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn a_minimal_config_is_valid_with_the_default_pool_and_device_name_as_username() {
    let c = parse_str(BASE, "t.toml").unwrap();
    assert_eq!(c.devices[0].pool, "default");
    assert!(matches!(&c.devices[0].kind, DeviceKind::SipPhone { username, .. } if username == "p1"));
}

const EXPECTED: &[&str] = &[
    "t.toml:1:5: TOML syntax error: unclosed table, expected `]`",
    "t.toml:2:1: unknown key `udpp` in [sip] (expected one of: udp, tcp, realm, domain, t1_ms, t2_ms, t4_ms, min_expires_s, max_expires_s, default_expires_s, digest_algorithms, max_calls, max_transactions, call_idle_s, throttle)",
    "t.toml:2:15: wrong type: found string \"x\", expected an integer",
    "t.toml:1:1: missing key `name` in [[device]]",
    "t.toml:20:6: directory number 1001 is already in partition \"internal\" (first defined on line 10)",
    "t.toml:21:13: line 1002 names partition \"nope\", which is not defined",
    "t.toml:21:27: calling search space \"x\" names partition \"gone\", which is not defined",
    "t.toml:24:7: device \"p2\" names calling search space \"nocss\", which is not defined",
    "t.toml:23:10: device \"p2\" names line \"1009\", which is not defined",
    "t.toml:24:8: device \"p2\" names device pool \"x\", which is not defined",
    "t.toml:20:8: duplicate device \"p1\" (first defined on line 14)",
    "t.toml:23:8: `port` does not apply to a device of type cti_port",
    "t.toml:23:8: board \"sim\" has no port \"fxs9\" (it has: fxs1, fxs2, fxo1)",
    "t.toml:23:8: board port \"fxo1\" is an fxo port; a device of type analog_fxs cannot use it",
    "t.toml:22:12: device \"p2\": password refused: shorter than 8 characters",
    "t.toml:22:12: device \"p2\": password refused: a well-known password",
    "t.toml:23:12: device \"p2\": password refused: contains the username, device name or number",
    "t.toml:22:12: duplicate SIP username \"p1\" (first defined on line 14)",
    "t.toml:20:7: cti.listen 0.0.0.0:2748 clashes with sip.tcp on the same port",
    "t.toml:20:10: http.listen 127.0.0.1:2748 clashes with cti.listen on the same port",
    "t.toml:21:16: media.rtp_port_min (20000) must be less than media.rtp_port_max (10000)",
    "t.toml:20:16: media.rtp_port_min = 20001 must be even (RTP uses even ports, RTCP the odd one above)",
    "t.toml:20:7: RTP port range 16384-32767 contains sip.udp port 16500",
    "t.toml:22:12: peer.priority = 300 is out of range 1..=255",
    "t.toml:23:19: peer.service_address = \"192.0.2.10\" is not an address like 192.0.2.10/24",
    "t.toml:21:10: app_user \"crm\": secret must be \"generate\" or an Argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$SALT$HASH; see `ctibox hash-secret`)",
    "t.toml:22:18: app_user \"crm\" names device \"p9\", which is not defined",
    "t.toml:21:10: app_user \"crm\": secret costs more than the box affords per login (m=1048576 KiB, t=2, p=1; at most m=65536, t=8, p=4, m*t=163840); hash it again with `ctibox hash-secret`",
    "t.toml:22:20: line 1002@internal: forward busy target 5555 matches no line or route pattern in calling search space \"all\"",
    "t.toml:22:34: line 1002 names calling search space \"none\", which is not defined",
    "t.toml:20:11: route pattern \"9..!\": has more than one '.'",
    "t.toml:22:10: route pattern \"9.!\" names trunk \"x\", which is not defined",
    "t.toml:22:10: route pattern target device \"p1\" is a sip_phone; only analog_fxo devices can be targets",
    "t.toml:17:10: directory number 1001 exists in several partitions (internal, pstn); write it as \"1001@PARTITION\"",
    "t.toml:20:8: unknown board \"rpi9\" (built in: sim, rpi4, rpi5; or set `file`)",
    "t.toml:20:11: country = \"xx\" is not one of: us, ca, uk, de, fr, it, es, nl, au",
    "t.toml:20:6: line dn \"10a2\" is not a directory number (digits, '*', '#', optional leading '+', 1-32)",
    "t.toml:22:16: display_name contains a control character or a double quote",
];

#[test]
fn each_kind_of_config_mistake_is_refused_with_its_position_and_message() {
    let cases = [
        "[sip\nudp = 1",
        "[sip]\nudpp = \"0.0.0.0:5060\"",
        "[cti]\nheartbeat_s = \"x\"",
        "[[device]]\ntype = \"sip_phone\"",
    ];
    let mut got: Vec<String> = cases.iter().map(|c| err(c)).collect();
    for c in [
        "[[line]]\ndn = \"1001\"\npartition = \"internal\"\n",
        "[[line]]\ndn = \"1002\"\npartition = \"nope\"\n",
        "[[calling_search_space]]\nname = \"x\"\npartitions = [\"internal\", \"gone\"]\n",
        "[[device]]\nname = \"p2\"\ntype = \"sip_phone\"\npassword = \"k7Vq2pLm9x\"\nlines = [\"1001\"]\ncss = \"nocss\"\n",
        "[[device]]\nname = \"p2\"\ntype = \"sip_phone\"\npassword = \"k7Vq2pLm9x\"\nlines = [\"1009\"]\n",
        "[[device]]\nname = \"p2\"\ntype = \"sip_phone\"\npassword = \"k7Vq2pLm9x\"\nlines = [\"1001\"]\npool = \"x\"\n",
        "[[device]]\nname = \"p1\"\ntype = \"cti_port\"\nlines = [\"1001\"]\n",
        "[[device]]\nname = \"p2\"\ntype = \"cti_port\"\nlines = [\"1001\"]\nport = \"fxs1\"\n",
        "[[device]]\nname = \"p2\"\ntype = \"analog_fxs\"\nlines = [\"1001\"]\nport = \"fxs9\"\n",
        "[[device]]\nname = \"p2\"\ntype = \"analog_fxs\"\nlines = [\"1001\"]\nport = \"fxo1\"\n",
        "[[device]]\nname = \"p2\"\ntype = \"sip_phone\"\npassword = \"1234\"\nlines = [\"1001\"]\n",
        "[[device]]\nname = \"p2\"\ntype = \"sip_phone\"\npassword = \"password\"\nlines = [\"1001\"]\n",
        "[[device]]\nname = \"p2\"\ntype = \"sip_phone\"\nusername = \"alice\"\npassword = \"alice2024x\"\nlines = [\"1001\"]\n",
        "[[device]]\nname = \"p2\"\ntype = \"sip_phone\"\nusername = \"p1\"\npassword = \"k7Vq2pLm9x\"\nlines = [\"1001\"]\n",
        "[sip]\ntcp = \"0.0.0.0:2748\"\n",
        "[http]\nlisten = \"127.0.0.1:2748\"\n",
        "[media]\nrtp_port_min = 20000\nrtp_port_max = 10000\n",
        "[media]\nrtp_port_min = 20001\n",
        "[sip]\nudp = \"0.0.0.0:16500\"\n",
        "[peer]\naddress = \"192.0.2.2:7000\"\nlisten = \"0.0.0.0:7000\"\npriority = 300\nservice_address = \"192.0.2.10/24\"\ninterface = \"eth0\"\nkey = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\nwitness = \"192.0.2.1\"\n",
        "[peer]\naddress = \"192.0.2.2:7000\"\nlisten = \"0.0.0.0:7000\"\npriority = 1\nservice_address = \"192.0.2.10\"\ninterface = \"eth0\"\nkey = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\nwitness = \"192.0.2.1\"\n",
        "[[app_user]]\nname = \"crm\"\nsecret = \"hunter22\"\n",
        "[[app_user]]\nname = \"crm\"\nsecret = \"generate\"\ndevices = [\"p1\", \"p9\"]\n",
        "[[app_user]]\nname = \"crm\"\nsecret = \"$argon2id$v=19$m=1048576,t=2,p=1$BwcHBwcHBwcHBwcHBwcHBw$7y7Yl3mP2uY3sQz0c8o0cQzb7ds1a0J1o2cPw7RZbhM\"\n",
        "[[line]]\ndn = \"1002\"\npartition = \"internal\"\nforward = { busy = \"5555\", css = \"all\" }\n",
        "[[line]]\ndn = \"1002\"\npartition = \"internal\"\nforward = { busy = \"1001\", css = \"none\" }\n",
        "[[route_pattern]]\npattern = \"9..!\"\npartition = \"internal\"\ntarget = \"trunk:x\"\n",
        "[[route_pattern]]\npattern = \"9.!\"\npartition = \"internal\"\ntarget = \"trunk:x\"\n",
        "[[route_pattern]]\npattern = \"9.!\"\npartition = \"internal\"\ntarget = \"device:p1\"\n",
        "[[partition]]\nname = \"pstn\"\n[[line]]\ndn = \"1001\"\npartition = \"pstn\"\n[[device]]\nname = \"p2\"\ntype = \"cti_port\"\nlines = [\"1001\"]\n",
        "[board]\nname = \"rpi9\"\n",
        "[system]\ncountry = \"xx\"\n",
        "[[line]]\ndn = \"10a2\"\npartition = \"internal\"\n",
        "[[line]]\ndn = \"1002\"\npartition = \"internal\"\ndisplay_name = \"Evil\\r\\nVia: x\"\n",
    ] {
        got.push(err(&with(c)));
    }
    assert_eq!(got.len(), EXPECTED.len());
    for (g, e) in got.iter().zip(EXPECTED) {
        assert_eq!(g, e);
    }
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ctibox-config-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn generated_secrets_are_created_once_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("secrets");
    let mut n = 0u8;
    let mut fill = |b: &mut [u8]| {
        for x in b {
            n = n.wrapping_add(7);
            *x = n;
        }
    };
    let mut cfg = embedded_default();
    let lines = resolve_generated(&mut cfg, &dir, &mut fill).unwrap();
    assert!(lines.iter().any(|l| l.starts_with("generated 5 new credential(s)")), "{lines:?}");
    let path = dir.join("secrets.toml");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let DeviceKind::SipPhone { password, .. } = &cfg.device("phone-1001").unwrap().kind else { panic!() };
    let first = password.plain().unwrap().to_string();
    assert_eq!(first.len(), 20);
    let app = cfg.app_user("ivr").unwrap();
    let AppSecret::Generated(plain) = &app.secret else { panic!("{:?}", app.secret) };
    assert!(app.secret.verify(plain) && !app.secret.verify("nope"));

    let mut again = embedded_default();
    let lines = resolve_generated(&mut again, &dir, &mut |_: &mut [u8]| panic!("no new secret needed")).unwrap();
    assert_eq!(lines, vec![format!("generated credentials are in {}", path.display())]);
    let DeviceKind::SipPhone { password, .. } = &again.device("phone-1001").unwrap().kind else { panic!() };
    assert_eq!(password.plain(), Some(first.as_str()));
    let _ = std::fs::remove_dir_all(&dir);
}

const PEER: &str = "[peer]\naddress = \"192.0.2.2:7400\"\nlisten = \"0.0.0.0:7400\"\npriority = 10\nservice_address = \"192.0.2.10/24\"\ninterface = \"eth0\"\n";

#[test]
fn a_peer_needs_a_pair_key_of_64_hex_digits_or_generate_and_a_witness_address() {
    let e = err(PEER);
    assert!(e.contains("key"), "{e}");
    for (tail, want) in [
        ("key = \"abc\"\nwitness = \"192.0.2.1\"\n", "t.toml:7:7: peer.key must be \"generate\" or 64 hex digits"),
        (&format!("key = \"{}\"\nwitness = \"192.0.2.1\"\n", "g".repeat(64)), "t.toml:7:7: peer.key must be"),
        ("key = \"generate\"\nwitness = \"gateway\"\n", "t.toml:8:11: peer.witness = \"gateway\" is not an address like 192.0.2.1"),
    ] {
        let e = err(&format!("{PEER}{tail}"));
        assert!(e.contains(want), "{tail}: {e}");
    }
    let ok = parse_str(&format!("{PEER}key = \"{}\"\nwitness = \"192.0.2.1\"\n", "0f".repeat(32)), "t.toml").unwrap();
    let p = ok.peer.unwrap();
    assert_eq!(p.key.bytes(), Some(&[0x0f; 32]));
    assert_eq!(format!("{:?}", p.key), "PairKey(<redacted>)");
    assert_eq!(p.witness, "192.0.2.1".parse::<std::net::IpAddr>().unwrap());
    let e = err(&format!("{PEER}heartbeat_ms = 10\nkey = \"generate\"\nwitness = \"192.0.2.1\"\n"));
    assert!(e.contains("peer.heartbeat_ms = 10 is out of range 20..=1000"), "{e}");
}

#[test]
fn a_generated_pair_key_is_made_once_in_secrets_toml_and_kept() {
    let dir = temp_dir("pair-key");
    let mut cfg = parse_str(&format!("{PEER}key = \"generate\"\nwitness = \"192.0.2.1\"\n"), "t.toml").unwrap();
    let lines = resolve_generated(&mut cfg, &dir, &mut |b: &mut [u8]| b.fill(0xab)).unwrap();
    assert!(lines.iter().any(|l| l.contains("copy it to the other box's peer.key")), "{lines:?}");
    assert_eq!(cfg.peer.as_ref().unwrap().key.bytes(), Some(&[0xab; 32]));
    let text = std::fs::read_to_string(dir.join("secrets.toml")).unwrap();
    assert!(text.contains(&format!("[peer]\nkey = \"{}\"", "ab".repeat(32))), "{text}");
    let mut again = parse_str(&format!("{PEER}key = \"generate\"\nwitness = \"192.0.2.1\"\n"), "t.toml").unwrap();
    resolve_generated(&mut again, &dir, &mut |_: &mut [u8]| panic!("no new key needed")).unwrap();
    assert_eq!(again.peer.unwrap().key.bytes(), Some(&[0xab; 32]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_builtin_board_parses_with_three_ports_and_only_sim_is_simulated() {
    for (name, _) in crate::board::BUILTIN {
        let b = crate::board::Board::by_name(name).unwrap();
        assert_eq!(b.name, *name);
        assert_eq!(b.simulated, *name == "sim");
        assert_eq!(b.ports.len(), 3);
    }
    assert!(crate::board::Board::by_name("rpi9").is_none());
}

#[test]
fn board_file_mistakes_are_refused_with_their_position_and_message() {
    use crate::board::Board;
    let head = "name = \"x\"\ndriver = \"linux\"\ngpio_chip = \"gpiochip0\"\n";
    let port = "[[port]]\nname = \"fxs1\"\nkind = \"fxs\"\nplayback = \"hw:1\"\ncapture = \"hw:1\"\n";
    let fxs = "hook = { line = \"GPIO17\" }\nring_mode = { line = \"GPIO27\" }\nfwd_rev = { line = \"GPIO22\" }\n";
    let cases = [
        ("name = \"x\"\ndriver = \"linux\"\n", "b.toml:2:10: `driver = \"linux\"` needs `gpio_chip`"),
        (&format!("{head}{port}{fxs}seize = {{ line = \"GPIO24\" }}\n") as &str, "b.toml:12:9: `seize` does not apply to an fxs port"),
        (&format!("{head}{port}{fxs}ring_signal = \"pulses\"\n") as &str, "b.toml:12:15: `ring_signal` does not apply to an fxs port"),
        (&format!("{head}{port}hook = {{ line = \"GPIO17\" }}\nring_mode = {{ line = \"GPIO27\" }}\n"), "b.toml:5:8: an fxs port needs `fwd_rev`"),
        (&format!("{head}{port}hook = {{ line = \"GPIO17\" }}\nring_mode = {{ line = \"GPIO17\" }}\nfwd_rev = {{ line = \"GPIO22\" }}\n"),
            "b.toml:10:22: GPIO line \"GPIO17\" is already used by port \"fxs1\""),
        (&format!("{head}{port}hook = {{ line = \"GPIO17\", active = true }}\n"), "b.toml:9:27: unknown key `active` in [[port]] (expected one of: line, active_low)"),
        (&format!("{head}{port}{fxs}{port}{fxs}").replace("GPIO", "X") .replacen("X17", "A", 1).replacen("X27", "B", 1).replacen("X22", "C", 1),
            "b.toml:13:8: duplicate port \"fxs1\" (first defined on line 5)"),
        // The earlier model's keys name what replaced them.
        (&format!("{head}{port}hook = {{ line = \"GPIO17\" }}\nring = {{ line = \"GPIO27\" }}\n"),
            "b.toml:10:8: `ring` is no longer a board key: a SLIC rings through `ring_mode` (RM) and `fwd_rev` (F/R) (board/README.md)"),
        (&format!("{head}{}ring_detect = {{ line = \"GPIO23\" }}\nring_signal = \"pulses\"\nrelay = {{ line = \"GPIO22\" }}\n", port.replace("fxs", "fxo")),
            "b.toml:11:9: `relay` is no longer a board key: an FXO port's off-hook relay is `seize` (board/README.md)"),
        // An FXO port must say what its ring detector gives, and say it right.
        (&format!("{head}{}ring_detect = {{ line = \"GPIO23\" }}\nseize = {{ line = \"GPIO24\" }}\n", port.replace("fxs", "fxo")),
            "b.toml:5:8: an fxo port needs `ring_signal`"),
        (&format!("{head}{}ring_detect = {{ line = \"GPIO23\" }}\nring_signal = \"sine\"\nseize = {{ line = \"GPIO24\" }}\n", port.replace("fxs", "fxo")),
            "b.toml:10:15: ring_signal = \"sine\" is not one of: level, pulses"),
        // Gains within -24..=12 dB.
        (&format!("{head}{port}playback_gain_db = 13\n{fxs}"), "b.toml:9:20: playback_gain_db = 13 is out of range -24..=12"),
        (&format!("{head}{port}capture_gain_db = -300\n{fxs}"), "b.toml:9:19: capture_gain_db = -300 is out of range -24..=12"),
    ];
    for (text, want) in cases {
        assert_eq!(Board::parse_str(text, "b.toml").unwrap_err().to_string(), want, "{text}");
    }
    let b = Board::parse_str(&format!("{head}{port}playback_gain_db = -6\ncapture_gain_db = 3\n{fxs}"), "b.toml").unwrap();
    assert_eq!((b.ports[0].playback_gain_db, b.ports[0].capture_gain_db), (-6, 3));
    let b = Board::parse_str(&format!("{head}{port}{fxs}"), "b.toml").unwrap();
    assert_eq!((b.ports[0].playback_gain_db, b.ports[0].capture_gain_db), (0, 0));
}

#[test]
fn a_board_file_named_by_the_config_is_loaded_and_its_errors_name_that_file() {
    let dir = temp_dir("board");
    let board = "name = \"custom\"\ndriver = \"sim\"\n[[port]]\nname = \"line1\"\nkind = \"fxs\"\nplayback = \"a\"\ncapture = \"a\"\nhook = { line = \"H\" }\nring_mode = { line = \"R\" }\nfwd_rev = { line = \"F\" }\n";
    std::fs::write(dir.join("myboard.toml"), board).unwrap();
    let cfg = dir.join("c.toml");
    let text = with("[board]\nfile = \"myboard.toml\"\n[[device]]\nname = \"a1\"\ntype = \"analog_fxs\"\nport = \"line1\"\nlines = [\"1001\"]\n");
    std::fs::write(&cfg, &text).unwrap();
    let c = load_file(&cfg).unwrap();
    assert_eq!(c.board.name, "custom");
    assert_eq!(c.board.def.port("line1").map(|p| p.kind), Some(crate::board::PortKind::Fxs));
    std::fs::write(dir.join("myboard.toml"), board.replace("kind = \"fxs\"", "kind = \"fxz\"")).unwrap();
    let e = load_file(&cfg).unwrap_err().to_string();
    assert_eq!(e, format!("{}:5:8: kind = \"fxz\" is not one of: fxs, fxo", dir.join("myboard.toml").display()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn moh_file_is_checked_at_load() {
    let dir = temp_dir("moh");
    let cfg = dir.join("c.toml");
    let load = |key: &str| {
        std::fs::write(&cfg, with(&format!("[media]\nmoh_file = \"{key}\"\n"))).unwrap();
        load_file(&cfg)
    };
    // Missing file: the error points at the value.
    let e = load("nope.wav").unwrap_err();
    assert_eq!((e.line, e.column), (20, 12), "{e}");
    assert!(e.to_string().contains("media.moh_file") && e.to_string().contains("cannot read"), "{e}");
    // Not a WAV; then a WAV at the wrong rate.
    std::fs::write(dir.join("text.wav"), "hello").unwrap();
    assert!(load("text.wav").unwrap_err().to_string().ends_with("not a RIFF file"));
    let mut wrong_rate = crate::codec::wav::write_pcm16(&[0, 100, -100, 0]);
    wrong_rate[24..28].copy_from_slice(&16_000u32.to_le_bytes());
    std::fs::write(dir.join("wb.wav"), &wrong_rate).unwrap();
    let e = load("wb.wav").unwrap_err().to_string();
    assert!(e.ends_with("WAV rate is 16000 Hz; prompts must be 8000 Hz"), "{e}");
    // A good one, relative to the config file.
    std::fs::write(dir.join("moh.wav"), crate::codec::wav::write_pcm16(&[0, 1000, -1000, 0])).unwrap();
    let c = load("moh.wav").unwrap();
    assert_eq!(c.media.moh_file, Some(dir.join("moh.wav")));
    assert_eq!(embedded_default().media.moh_file, None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn odd_input_never_panics_and_an_empty_file_is_valid() {
    for t in ["", "\u{feff}", "[[device]]\n", "[peer]\n", "a = 1", "[sip]\nt1_ms = 99999999999999999999", "[[line]]\ndn=\"\"\npartition=\"\"", "\u{1F600} = 1"] {
        let _ = parse_str(t, "t.toml");
    }
    assert!(parse_str("", "t.toml").is_ok(), "an empty file is the minimal valid configuration");
}

#[test]
fn a_config_error_is_smaller_than_128_bytes() {
    assert!(std::mem::size_of::<ConfigError>() < 128, "{}", std::mem::size_of::<ConfigError>());
}

#[test]
fn prompts_dir_is_checked_at_load_when_set() {
    let dir = temp_dir("prompts");
    let cfg = dir.join("c.toml");
    let load = |key: &str| {
        std::fs::write(&cfg, with(&format!("[media]\nprompts_dir = \"{key}\"\n"))).unwrap();
        load_file(&cfg)
    };
    let e = load("nope").unwrap_err();
    assert_eq!((e.line, e.column), (20, 15), "{e}");
    assert!(e.to_string().contains("media.prompts_dir") && e.to_string().contains("cannot read"), "{e}");
    std::fs::write(dir.join("file"), "x").unwrap();
    assert!(load("file").unwrap_err().to_string().ends_with("not a directory"));
    // A directory, relative to the config file.
    std::fs::create_dir_all(dir.join("prompts")).unwrap();
    assert_eq!(load("prompts").unwrap().media.prompts_dir, dir.join("prompts"));
    // Unset: the packaged directory, which need not exist.
    assert_eq!(embedded_default().media.prompts_dir, std::path::PathBuf::from("/usr/share/ctibox/prompts"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lookups_by_name_username_and_line_use_the_index_and_survive_a_hand_edited_config() {
    let mut text = String::from("[[partition]]\nname = \"internal\"\n[[calling_search_space]]\nname = \"all\"\npartitions = [\"internal\"]\n");
    for i in 0..1000 {
        text += &format!("[[line]]\ndn = \"{}\"\npartition = \"internal\"\n", 20000 + i);
        text += &format!(
            "[[device]]\nname = \"p{i}\"\ntype = \"sip_phone\"\nusername = \"u{i}\"\npassword = \"Pw-secret-q{i}x\"\nlines = [\"{}\"]\ncss = \"all\"\n",
            20000 + i
        );
    }
    let mut c = parse_str(&text, "t.toml").unwrap();
    let key = |dn: &str| crate::config::LineKey { dn: dn.into(), partition: "internal".into() };
    assert_eq!(c.phone_by_username("u731").map(|d| d.name.as_str()), Some("p731"));
    assert_eq!(c.device("p999").map(|d| d.lines[0].dn.as_str()), Some("20999"));
    assert_eq!(c.line(&key("20500")).map(|l| l.dn.as_str()), Some("20500"));
    assert_eq!(c.devices_of_line(&key("20042")).map(|d| d.name.as_str()).collect::<Vec<_>>(), ["p42"]);
    assert!(c.phone_by_username("nobody").is_none() && c.device("p1000").is_none() && c.line(&key("1")).is_none());
    // Entries moved after indexing: each hit is checked, and a miss falls back to a scan.
    c.devices.swap(0, 731);
    c.lines.swap(0, 500);
    assert_eq!(c.phone_by_username("u731").map(|d| d.name.as_str()), Some("p731"));
    assert_eq!(c.device("p0").map(|d| d.name.as_str()), Some("p0"));
    assert_eq!(c.line(&key("20500")).map(|l| l.dn.as_str()), Some("20500"));
    assert_eq!(c.devices_of_line(&key("20000")).map(|d| d.name.as_str()).collect::<Vec<_>>(), ["p0"]);
}

#[test]
fn analog_device_options_have_defaults_and_are_checked() {
    let analog = "[[line]]\ndn = \"4001\"\npartition = \"internal\"\n\
                  [[device]]\nname = \"a1\"\ntype = \"analog_fxs\"\nport = \"fxs1\"\nlines = [\"4001\"]\n\
                  [[device]]\nname = \"o1\"\ntype = \"analog_fxo\"\nport = \"fxo1\"\ninbound_dn = \"4001\"\n";
    let c = parse_str(&with(analog), "t.toml").unwrap();
    assert!(c.devices.iter().any(|d| matches!(d.kind, DeviceKind::AnalogFxs { call_waiting: true, .. })));
    assert!(c.devices.iter().any(|d| matches!(d.kind, DeviceKind::AnalogFxo { polarity_answer: true, answer_delay_s: 2, .. })));
    let c = parse_str(&with(&analog.replace("lines = [\"4001\"]\n", "lines = [\"4001\"]\ncall_waiting = false\n")), "t.toml").unwrap();
    assert!(c.devices.iter().any(|d| matches!(d.kind, DeviceKind::AnalogFxs { call_waiting: false, .. })));
    let e = err(&with(&analog.replace("inbound_dn = \"4001\"\n", "inbound_dn = \"4001\"\nanswer_delay_s = 31\n")));
    assert!(e.contains("answer_delay_s") && e.contains("31"), "{e}");
    let e = err(&with(&analog.replace("port = \"fxs1\"\n", "port = \"fxs1\"\npolarity_answer = false\n")));
    assert!(e.contains("`polarity_answer` does not apply to a device of type analog_fxs"), "{e}");
}
