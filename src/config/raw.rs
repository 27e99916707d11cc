//! The configuration file as serde reads it: every key, unknown keys refused, values
//! kept with their byte spans so that validation can point at file:line:column. Only
//! `validate` looks inside; nothing else in the crate sees these types.

use serde::Deserialize;
use toml::Spanned;

/// A value with its position in the file.
pub(super) type S<T> = Spanned<T>;
pub(super) type OS<T> = Option<Spanned<T>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub system: RawSystem,
    #[serde(default)]
    pub sip: RawSip,
    #[serde(default)]
    pub cti: RawCti,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub media: RawMedia,
    #[serde(default)]
    pub partition: Vec<RawPartition>,
    #[serde(default)]
    pub calling_search_space: Vec<RawCss>,
    #[serde(default)]
    pub line: Vec<RawLine>,
    #[serde(default)]
    pub device: Vec<RawDevice>,
    #[serde(default)]
    pub device_pool: Vec<RawPool>,
    #[serde(default)]
    pub route_pattern: Vec<RawRoutePattern>,
    #[serde(default)]
    pub trunk: Vec<RawTrunk>,
    #[serde(default)]
    pub app_user: Vec<RawAppUser>,
    pub peer: Option<RawPeer>,
    #[serde(default)]
    pub board: RawBoardRef,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSystem {
    pub name: OS<String>,
    pub data_dir: OS<String>,
    pub log_level: OS<String>,
    pub country: OS<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSip {
    pub udp: OS<String>,
    pub tcp: OS<String>,
    pub realm: OS<String>,
    pub domain: OS<String>,
    pub t1_ms: OS<i64>,
    pub t2_ms: OS<i64>,
    pub t4_ms: OS<i64>,
    pub min_expires_s: OS<i64>,
    pub max_expires_s: OS<i64>,
    pub default_expires_s: OS<i64>,
    pub digest_algorithms: OS<Vec<S<String>>>,
    pub max_calls: OS<i64>,
    pub max_transactions: OS<i64>,
    pub call_idle_s: OS<i64>,
    #[serde(default)]
    pub throttle: RawThrottle,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThrottle {
    pub auth_failures: OS<i64>,
    pub window_s: OS<i64>,
    pub ban_s: OS<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCti {
    pub listen: OS<String>,
    pub heartbeat_s: OS<i64>,
    pub max_apps: OS<i64>,
    #[serde(default)]
    pub throttle: RawThrottle,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub listen: OS<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMedia {
    pub rtp_port_min: OS<i64>,
    pub rtp_port_max: OS<i64>,
    pub codecs: OS<Vec<S<String>>>,
    pub moh_file: OS<String>,
    pub prompts_dir: OS<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPartition {
    pub name: S<String>,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCss {
    pub name: S<String>,
    pub partitions: Vec<S<String>>,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLine {
    pub dn: S<String>,
    pub partition: S<String>,
    pub display_name: OS<String>,
    #[serde(default)]
    pub forward: RawForward,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForward {
    pub all: OS<String>,
    pub busy: OS<String>,
    pub no_answer: OS<String>,
    pub no_answer_timeout_s: OS<i64>,
    pub on_failure: OS<String>,
    pub unregistered: OS<String>,
    pub css: OS<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevice {
    pub name: S<String>,
    #[serde(rename = "type")]
    pub kind: S<String>,
    pub lines: OS<Vec<S<String>>>,
    pub css: OS<String>,
    pub pool: OS<String>,
    pub description: Option<String>,
    // sip_phone
    pub username: OS<String>,
    pub password: OS<String>,
    // cti_route_point
    pub max_calls: OS<i64>,
    pub answer_timeout_s: OS<i64>,
    // cti_port
    pub media: OS<String>,
    pub codec: OS<String>,
    // analog_fxs, analog_fxo
    pub port: OS<String>,
    // analog_fxs
    pub call_waiting: OS<bool>,
    // analog_fxo
    pub inbound_dn: OS<String>,
    pub polarity_answer: OS<bool>,
    pub answer_delay_s: OS<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub name: S<String>,
    pub codecs: OS<Vec<S<String>>>,
    pub country: OS<String>,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoutePattern {
    pub pattern: S<String>,
    pub partition: S<String>,
    pub target: S<String>,
    pub strip_prefix: OS<bool>,
    pub prefix: OS<String>,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrunk {
    pub name: S<String>,
    pub address: S<String>,
    pub transport: OS<String>,
    pub register: OS<bool>,
    pub username: OS<String>,
    pub password: OS<String>,
    pub css: OS<String>,
    pub inbound_dn: OS<String>,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAppUser {
    pub name: S<String>,
    pub secret: S<String>,
    pub devices: OS<Vec<S<String>>>,
    pub all_devices: OS<bool>,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeer {
    pub address: S<String>,
    pub listen: S<String>,
    pub priority: S<i64>,
    pub service_address: S<String>,
    pub interface: S<String>,
    pub heartbeat_ms: OS<i64>,
    pub dead_after_ms: OS<i64>,
    pub key: S<String>,
    pub witness: S<String>,
    pub peer_lan_address: OS<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBoardRef {
    pub name: OS<String>,
    pub file: OS<String>,
}
