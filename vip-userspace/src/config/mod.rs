//! The TOML config: serde model, defaults, and validation into a [`Config`] that
//! the rest of vip can trust. Nothing here touches the host.

mod allow;
mod bgp;
pub mod nesting;
mod validate;

use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

pub use allow::{AllowList, Rule};
pub use bgp::{Bgp, BgpConfigError, HealthCheck, Neighbor, Probe};

pub use validate::ConfigError;

/// Default number of per-VIP slots shared by all sparse ranges.
pub const DEFAULT_SPARSE_VIP_CAPACITY: u32 = 65_536;
/// A sparse VIP that has seen no packet for this long gives its slot up to the
/// next new VIP that needs one.
pub const DEFAULT_SPARSE_IDLE_SECONDS: u32 = 60;
/// Where `vip run` serves /metrics and /healthz unless told otherwise: loopback,
/// on purpose (per-VIP counters are not for everyone to read).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9669";
/// Per-VIP series a range exports at most, busiest first.
pub const DEFAULT_MAX_VIP_SERIES: u32 = 1024;
/// The UDP port GUE tunnels arrive on unless `gue_port` says otherwise.
pub const DEFAULT_GUE_PORT: u16 = 6080;

/// A tunnel the XDP program can strip.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    /// IPv4 or IPv6 in IPv4 (IP protocol 4 or 41): LVS-TUN, Katran.
    Ipip,
    /// IPv6 or IPv4 in IPv6 (next header 41 or 4).
    Ip6ip6,
    /// Generic UDP Encapsulation on `gue_port`: variant 0 (protocol 4 or 41) or
    /// variant 1 (the IP header right after UDP, as Katran sends it).
    Gue,
}

/// How to attach the classifier.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// XDP native (driver) mode, falling back to XDP generic, then to TC, with a
    /// warning.
    #[default]
    Auto,
    /// Native mode only; attaching fails where the driver has no XDP support.
    Native,
    /// Generic (skb) mode only.
    Generic,
    /// A TC ingress program (the same classifier), for devices where XDP cannot go.
    Tc,
}

/// How the host is made to accept a range's addresses as its own.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Accept {
    /// Count only; install nothing.
    #[default]
    None,
    /// The seed's `lo:0`: the network address with the range's prefix on `lo`
    /// (IPv4 only: on IPv6 it would make one address local).
    Alias,
    /// An AnyIP route: `ip route add local CIDR dev lo` in the local table.
    Route,
}

/// The file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    interfaces: Vec<String>,
    #[serde(default)]
    xdp_mode: XdpMode,
    #[serde(default = "default_sparse_vip_capacity")]
    sparse_vip_capacity: u32,
    #[serde(default = "default_sparse_idle_seconds")]
    sparse_idle_seconds: u32,
    arp_sysctls: Option<bool>,
    #[serde(default, rename = "range")]
    ranges: Vec<RawRange>,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    #[serde(default)]
    router: RawRouter,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    decap: Vec<Encap>,
    #[serde(default = "default_gue_port")]
    gue_port: u16,
    decap_interfaces: Option<Vec<String>>,
    bgp: Option<bgp::RawBgp>,
}

fn default_gue_port() -> u16 {
    DEFAULT_GUE_PORT
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    name: String,
    cidr: String,
    #[serde(default)]
    accept: Accept,
    #[serde(default)]
    allow_broad: bool,
    allow: Option<Vec<String>>,
    per_vip_metrics: Option<bool>,
    max_vip_series: Option<u32>,
    #[serde(default)]
    steer: Vec<RawSteer>,
    #[serde(default)]
    vips: Vec<String>,
    learn: Option<bool>,
    #[serde(default)]
    announce: bool,
    #[serde(default)]
    health: Vec<bgp::RawHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSteer {
    #[serde(rename = "match")]
    matches: String,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    cidr: String,
    via: std::net::IpAddr,
    dev: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    ip_forward: Option<bool>,
    ipv6_forwarding: Option<bool>,
    rp_filter: Option<u8>,
}

fn default_sparse_vip_capacity() -> u32 {
    DEFAULT_SPARSE_VIP_CAPACITY
}

fn default_sparse_idle_seconds() -> u32 {
    DEFAULT_SPARSE_IDLE_SECONDS
}

/// A validated config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// Slots in the per-VIP table of sparse ranges (IPv4 wider than /16, IPv6
    /// wider than /112, and IPv6 ranges that declare VIPs or do not learn).
    pub sparse_vip_capacity: u32,
    /// Seconds without a packet after which a sparse VIP's slot is reclaimed
    /// (its counts move into its range's).
    pub sparse_idle_seconds: u32,
    /// In file order; a range's position is its id in the datapath.
    pub ranges: Vec<Range>,
    /// Router role: CIDR routes through a next hop.
    pub routes: Vec<Route>,
    pub router: Router,
    /// Set `arp_ignore = 1` and `arp_announce = 2` on `all` and on `interfaces`.
    pub arp_sysctls: bool,
    /// Where `vip run` serves Prometheus metrics; `None` when `listen = "off"`.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub decap: Decap,
    /// The anycast announcement's speaker; `None` without `[bgp]`.
    pub bgp: Option<Bgp>,
}

/// Which tunnels XDP strips, and where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decap {
    /// Empty: none.
    pub encaps: Vec<Encap>,
    pub gue_port: u16,
    /// The interfaces that decapsulate: `decap_interfaces`, else all of
    /// `interfaces` (none when `encaps` is empty).
    pub interfaces: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub name: String,
    pub cidr: IpNet,
    pub accept: Accept,
    /// Allows a range broader than /8 (IPv4) or /32 (IPv6).
    pub allow_broad: bool,
    /// `None`: everything is allowed.
    pub allow: Option<AllowList>,
    /// Export per-VIP series for this range (the range totals are always there).
    pub per_vip_metrics: bool,
    /// At most this many per-VIP series, the busiest.
    pub max_vip_series: u32,
    /// Socket steering entries, in config order.
    pub steer: Vec<Steer>,
    /// Declared VIPs (sparse ranges only): each always has its own row, never
    /// reclaimed. In config order, no duplicates.
    pub vips: Vec<std::net::IpAddr>,
    /// Whether addresses other than `vips` get rows in the sparse table (true)
    /// or count only in the range's totals.
    pub learn: bool,
    /// Announce the CIDR over BGP while the range is healthy.
    pub announce: bool,
    /// What must pass, besides vip's own state, for the range to be announced.
    pub health: Vec<HealthCheck>,
}

/// `{ match = "tcp/80", to = "127.0.0.1:8080" }`: lookups for that protocol and
/// port on any VIP of the range go to the socket listening (TCP) or bound (UDP)
/// on `to`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Steer {
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    pub port: u16,
    pub to: std::net::SocketAddr,
}

impl Steer {
    /// The entry's `match` as written: `tcp/80`.
    pub fn label(&self) -> String {
        let proto = if self.proto == vip_common::IPPROTO_TCP {
            "tcp"
        } else {
            "udp"
        };
        format!("{proto}/{}", self.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub cidr: IpNet,
    pub via: std::net::IpAddr,
    /// The interface of the next hop; needed for a link-local one.
    pub dev: Option<String>,
}

/// Router-role sysctls; `None` leaves a sysctl alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Router {
    /// `net.ipv4.ip_forward`; on by default when an IPv4 `[[route]]` exists.
    pub ip_forward: Option<bool>,
    /// `net.ipv6.conf.all.forwarding`; on by default when an IPv6 `[[route]]` exists.
    pub ipv6_forwarding: Option<bool>,
    /// `net.ipv4.conf.{all,default}.rp_filter` (0, 1 or 2).
    pub rp_filter: Option<u8>,
}

impl Config {
    /// Reads and validates `path`. Checks that need the host (interfaces) are in
    /// `host::interfaces`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_path_buf(),
            location: location(text, e.span()),
            message: e.message().to_string(),
        })?;
        validate::validate(raw)
    }

    /// What `vip run` needs beyond a valid file: interfaces to attach to and ranges.
    pub fn check_runnable(&self) -> Result<(), ConfigError> {
        if self.interfaces.is_empty() {
            return Err(ConfigError::NoInterfaces);
        }
        if self.ranges.is_empty() {
            return Err(ConfigError::NoRanges);
        }
        Ok(())
    }
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(":{line}:{column}")
}

#[cfg(test)]
mod tests;
