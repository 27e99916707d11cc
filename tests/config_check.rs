//! `ctibox check-config` on the real binary: each bad configuration is refused with a
//! non-zero exit and exactly `file:line:column: reason`; the documented example and the
//! embedded default pass.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ctibox");

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ctibox-config-check-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check(path: &Path) -> (i32, String, String) {
    let out = Command::new(BIN).arg("check-config").arg(path).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Writes `text` as `<name>.toml` and expects exactly `want` (after the file name).
fn refused(name: &str, text: &str, want: &str) {
    let path = dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 1, "{name}: accepted");
    assert_eq!(err.trim_end(), format!("{}:{want}", path.display()), "{name}");
}

const BASE: &str = r#"# a small valid configuration
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
fn a_toml_syntax_error_is_refused_at_its_position() {
    refused("syntax", "[sip\nudp = \"0.0.0.0:5060\"\n", "1:5: TOML syntax error: unclosed table, expected `]`");
}

#[test]
fn an_unknown_key_is_refused_at_its_position() {
    refused(
        "unknown_key",
        "[cti]\nlisten = \"0.0.0.0:2748\"\nheartbeat = 5\n",
        "3:1: unknown key `heartbeat` in [cti] (expected one of: listen, heartbeat_s, max_apps, throttle)",
    );
}

#[test]
fn a_value_of_the_wrong_type_is_refused_at_its_position() {
    refused("wrong_type", "[media]\nrtp_port_min = \"16384\"\n", "2:16: wrong type: found string \"16384\", expected an integer");
}

#[test]
fn a_duplicate_dn_in_a_partition_is_refused_at_its_position() {
    refused(
        "dup_dn",
        &with("[[line]]\ndn = \"1001\"\npartition = \"internal\"\n"),
        "20:6: directory number 1001 is already in partition \"internal\" (first defined on line 10)",
    );
}

#[test]
fn a_line_in_a_missing_partition_is_refused_at_its_position() {
    refused(
        "line_partition",
        &with("[[line]]\ndn = \"1002\"\npartition = \"sales\"\n"),
        "21:13: line 1002 names partition \"sales\", which is not defined",
    );
}

#[test]
fn a_css_with_a_missing_partition_is_refused_at_its_position() {
    refused(
        "css_partition",
        &with("[[calling_search_space]]\nname = \"x\"\npartitions = [\"internal\", \"pstn\"]\n"),
        "21:27: calling search space \"x\" names partition \"pstn\", which is not defined",
    );
}

#[test]
fn a_device_with_a_missing_css_line_or_pool_is_refused_at_its_position() {
    let dev = "[[device]]\nname = \"p2\"\ntype = \"sip_phone\"\npassword = \"k7Vq2pLm9x\"\n";
    refused("dev_css", &with(&format!("{dev}lines = [\"1001\"]\ncss = \"staff\"\n")), "24:7: device \"p2\" names calling search space \"staff\", which is not defined");
    refused("dev_line", &with(&format!("{dev}lines = [\"1009\"]\n")), "23:10: device \"p2\" names line \"1009\", which is not defined");
    refused("dev_pool", &with(&format!("{dev}lines = [\"1001\"]\npool = \"branch\"\n")), "24:8: device \"p2\" names device pool \"branch\", which is not defined");
}

#[test]
fn two_listeners_on_one_port_are_refused_at_their_position() {
    refused("clash", "[sip]\nudp = \"0.0.0.0:5060\"\ntcp = \"0.0.0.0:5060\"\n[http]\nlisten = \"0.0.0.0:5060\"\n", "5:10: http.listen 0.0.0.0:5060 clashes with sip.tcp on the same port");
}

#[test]
fn an_unreachable_forward_target_is_refused_at_its_position() {
    refused(
        "forward",
        &with("[[line]]\ndn = \"1002\"\npartition = \"internal\"\nforward = { no_answer = \"5555\", css = \"all\" }\n"),
        "22:25: line 1002@internal: forward no_answer target 5555 matches no line or route pattern in calling search space \"all\"",
    );
}

#[test]
fn a_duplicate_device_name_is_refused_at_its_position() {
    refused(
        "dup_device",
        &with("[[device]]\nname = \"p1\"\ntype = \"cti_port\"\nlines = [\"1001\"]\n"),
        "20:8: duplicate device \"p1\" (first defined on line 14)",
    );
}

#[test]
fn an_app_user_with_an_unknown_device_is_refused_at_its_position() {
    refused(
        "app_device",
        &with("[[app_user]]\nname = \"crm\"\nsecret = \"generate\"\ndevices = [\"p1\", \"p7\"]\n"),
        "22:18: app_user \"crm\" names device \"p7\", which is not defined",
    );
}

#[test]
fn device_fields_that_do_not_fit_the_device_or_board_are_refused_at_their_position() {
    refused(
        "cti_port_with_port",
        &with("[[device]]\nname = \"port1\"\ntype = \"cti_port\"\nlines = [\"1001\"]\nport = \"fxs1\"\n"),
        "23:8: `port` does not apply to a device of type cti_port",
    );
    refused(
        "analog_missing_port",
        &with("[[device]]\nname = \"fax\"\ntype = \"analog_fxs\"\nlines = [\"1001\"]\nport = \"fxs7\"\n"),
        "23:8: board \"sim\" has no port \"fxs7\" (it has: fxs1, fxs2, fxo1)",
    );
}

#[test]
fn a_bad_secret_format_is_refused_at_its_position() {
    refused(
        "secret",
        &with("[[app_user]]\nname = \"crm\"\nsecret = \"hunter2hunter2\"\n"),
        "21:10: app_user \"crm\": secret must be \"generate\" or an Argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$SALT$HASH; see `ctibox hash-secret`)",
    );
}

#[test]
fn weak_sip_passwords_are_refused_at_their_position() {
    let dev = "[[device]]\nname = \"p2\"\ntype = \"sip_phone\"\nusername = \"alice\"\nlines = [\"1001\"]\n";
    refused("pw_short", &with(&format!("{dev}password = \"1234\"\n")), "24:12: device \"p2\": password refused: shorter than 8 characters");
    refused("pw_known", &with(&format!("{dev}password = \"password\"\n")), "24:12: device \"p2\": password refused: a well-known password");
    refused("pw_user", &with(&format!("{dev}password = \"Alice-2024!\"\n")), "24:12: device \"p2\": password refused: contains the username, device name or number");
}

#[test]
fn an_rtp_range_out_of_order_or_odd_is_refused_at_its_position() {
    refused("rtp_order", "[media]\nrtp_port_min = 20000\nrtp_port_max = 18000\n", "3:16: media.rtp_port_min (20000) must be less than media.rtp_port_max (18000)");
    refused("rtp_odd", "[media]\nrtp_port_min = 20001\n", "2:16: media.rtp_port_min = 20001 must be even (RTP uses even ports, RTCP the odd one above)");
}

#[test]
fn a_peer_priority_out_of_range_is_refused_at_its_position() {
    refused(
        "peer",
        "[peer]\naddress = \"192.0.2.2:7400\"\nlisten = \"0.0.0.0:7400\"\npriority = 0\nservice_address = \"192.0.2.10/24\"\ninterface = \"eth0\"\nkey = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\nwitness = \"192.0.2.1\"\n",
        "4:12: peer.priority = 0 is out of range 1..=255",
    );
}

#[test]
fn every_error_is_reported() {
    let path = dir().join("many.toml");
    std::fs::write(&path, with("[[line]]\ndn = \"1002\"\npartition = \"x\"\n[[device]]\nname = \"p1\"\ntype = \"cti_port\"\nlines = [\"1001\"]\n")).unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 1);
    let p = path.display();
    assert_eq!(
        err,
        format!("{p}:21:13: line 1002 names partition \"x\", which is not defined\n{p}:23:8: duplicate device \"p1\" (first defined on line 14)\n")
    );
}

#[test]
fn a_missing_file_is_refused_as_unreadable() {
    let (code, _, err) = check(Path::new("/nonexistent/ctibox.toml"));
    assert_eq!(code, 1);
    assert!(err.starts_with("/nonexistent/ctibox.toml:0:0: cannot read: "), "{err}");
}

#[test]
fn example_office_passes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/example-office.toml");
    let (code, out, err) = check(&path);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim_end(), format!("{}: ok (board rpi4, 11 devices, 10 lines)", path.display()));
}

#[test]
fn embedded_default_passes() {
    let out = Command::new(BIN).arg("print-default-config").output().unwrap();
    assert!(out.status.success());
    let path = dir().join("default.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn hash_secret_gives_an_argon2id_phc_that_check_config_accepts() {
    let mut child = Command::new(BIN).arg("hash-secret").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"operator-console-secret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    let path = dir().join("hashed.toml");
    std::fs::write(&path, with(&format!("[[app_user]]\nname = \"op\"\nsecret = \"{}\"\nall_devices = true\n", phc.trim_end()))).unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 0, "{err}");
}
