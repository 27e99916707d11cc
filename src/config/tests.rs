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
fn base_is_valid() {
    let c = parse_str(BASE, "t.toml").unwrap();
    assert_eq!(c.devices[0].pool, "default");
    assert!(matches!(&c.devices[0].kind, DeviceKind::SipPhone { username, .. } if username == "p1"));
}

#[test]
fn show_messages() {
    let cases = [
        "[sip\nudp = 1",
        "[sip]\nudpp = \"0.0.0.0:5060\"",
        "[cti]\nheartbeat_s = \"x\"",
        "[[device]]\ntype = \"sip_phone\"",
    ];
    for c in cases {
        println!("{}", err(c));
    }
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
        "[peer]\naddress = \"192.0.2.2:7000\"\nlisten = \"0.0.0.0:7000\"\npriority = 300\nservice_address = \"192.0.2.10/24\"\ninterface = \"eth0\"\n",
        "[peer]\naddress = \"192.0.2.2:7000\"\nlisten = \"0.0.0.0:7000\"\npriority = 1\nservice_address = \"192.0.2.10\"\ninterface = \"eth0\"\n",
        "[[app_user]]\nname = \"crm\"\nsecret = \"hunter22\"\n",
        "[[app_user]]\nname = \"crm\"\nsecret = \"generate\"\ndevices = [\"p1\", \"p9\"]\n",
        "[[line]]\ndn = \"1002\"\npartition = \"internal\"\nforward = { busy = \"5555\" }\n",
        "[[line]]\ndn = \"1002\"\npartition = \"internal\"\nforward = { busy = \"1001\" }\n",
        "[[route_pattern]]\npattern = \"9..!\"\npartition = \"internal\"\ntarget = \"trunk:x\"\n",
        "[[route_pattern]]\npattern = \"9.!\"\npartition = \"internal\"\ntarget = \"trunk:x\"\n",
        "[[route_pattern]]\npattern = \"9.!\"\npartition = \"internal\"\ntarget = \"device:p1\"\n",
        "[[partition]]\nname = \"pstn\"\n[[line]]\ndn = \"1001\"\npartition = \"pstn\"\n[[device]]\nname = \"p2\"\ntype = \"cti_port\"\nlines = [\"1001\"]\n",
        "[board]\nname = \"rpi9\"\n",
        "[system]\ncountry = \"xx\"\n",
        "[[line]]\ndn = \"10a2\"\npartition = \"internal\"\n",
        "[[line]]\ndn = \"1002\"\npartition = \"internal\"\ndisplay_name = \"Evil\\r\\nVia: x\"\n",
    ] {
        println!("{}", err(&with(c)));
    }
}
