//! `[bgp]` and each range's `announce` and `health`: the anycast announcement
//! that BIRD makes for vip (see `crate::bgp`), validated before anything runs.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use ipnet::IpNet;
use serde::Deserialize;

use super::Accept;

/// Seconds a drained range stays announced with the graceful-shutdown
/// community before it is withdrawn, unless `drain_seconds` says otherwise.
pub const DEFAULT_DRAIN_SECONDS: u32 = 5;
pub const MAX_DRAIN_SECONDS: u32 = 3600;
/// The BIRD 2 daemon and its client, as Debian's `bird2` installs them.
pub const DEFAULT_BIRD: &str = "bird";
pub const DEFAULT_BIRDC: &str = "birdc";
/// Health check timing unless a check says otherwise.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_TIMEOUT_MS: u64 = 500;
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 2;
pub const INTERVAL_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;
pub const RISE_FALL: std::ops::RangeInclusive<u32> = 1..=100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    local_as: u32,
    router_id: String,
    #[serde(default, rename = "neighbor")]
    neighbors: Vec<RawNeighbor>,
    #[serde(default)]
    communities: Vec<String>,
    #[serde(default = "default_drain_seconds")]
    drain_seconds: u32,
    #[serde(default = "default_bird")]
    bird: PathBuf,
    #[serde(default = "default_birdc")]
    birdc: PathBuf,
}

fn default_drain_seconds() -> u32 {
    DEFAULT_DRAIN_SECONDS
}

fn default_bird() -> PathBuf {
    DEFAULT_BIRD.into()
}

fn default_birdc() -> PathBuf {
    DEFAULT_BIRDC.into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    address: IpAddr,
    #[serde(rename = "as")]
    remote_as: u32,
    local_address: Option<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    check: String,
    #[serde(default = "default_interval_ms")]
    interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_rise")]
    rise: u32,
    #[serde(default = "default_fall")]
    fall: u32,
}

fn default_interval_ms() -> u64 {
    DEFAULT_INTERVAL_MS
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_rise() -> u32 {
    DEFAULT_RISE
}
fn default_fall() -> u32 {
    DEFAULT_FALL
}

/// The BGP speaker's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bgp {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub neighbors: Vec<Neighbor>,
    /// Added to every announcement, as (ASN, value).
    pub communities: Vec<(u16, u16)>,
    pub drain_seconds: u32,
    pub bird: PathBuf,
    pub birdc: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub address: IpAddr,
    pub remote_as: u32,
    pub local_address: Option<IpAddr>,
}

/// What a health check probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Passes when a TCP connection is accepted.
    Tcp(SocketAddr),
    /// Passes on a 2xx answer to `GET path`.
    Http { addr: SocketAddr, path: String },
    /// Passes when the program exits 0.
    Exec(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The check as written (`tcp:127.0.0.1:80`): its label in stats and metrics.
    pub label: String,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that bring a failed check up, and failures that take
    /// a passing one down.
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BgpConfigError {
    #[error("bgp.local_as = 0: expected an AS number, 1 to 4294967295 (private: 64512-65534, 4200000000-4294967294)")]
    LocalAsZero,
    #[error("bgp.router_id = {value:?} is not an IPv4 address (BGP router ids are 32-bit, written as IPv4)")]
    RouterId { value: String },
    #[error("bgp neighbor {address}: as = 0: expected an AS number")]
    NeighborAsZero { address: IpAddr },
    #[error("bgp neighbor {address} is listed twice")]
    DuplicateNeighbor { address: IpAddr },
    #[error("bgp neighbor {address}: local_address {local} is not of the same family")]
    NeighborFamily { address: IpAddr, local: IpAddr },
    #[error("[bgp] has no [[bgp.neighbor]]")]
    NoNeighbors,
    #[error("bgp.communities entry {value:?} is not ASN:VALUE with each part 0 to 65535")]
    Community { value: String },
    #[error("bgp.drain_seconds = {value} is above {MAX_DRAIN_SECONDS}")]
    DrainSeconds { value: u32 },
    #[error("range {range:?}: announce = true needs a [bgp] section")]
    AnnounceWithoutBgp { range: String },
    #[error("range {range:?}: announce = true with accept = \"none\" would draw traffic this host does not accept; set accept = \"alias\" or \"route\"")]
    AnnounceWithoutAccept { range: String },
    #[error("range {range:?}: announce = true for {cidr}, but no bgp neighbor is {family}")]
    NoNeighborOfFamily {
        range: String,
        cidr: IpNet,
        family: &'static str,
    },
    #[error("range {range:?}: health checks gate the announcement; set announce = true")]
    HealthWithoutAnnounce { range: String },
    #[error("range {range:?}: health check {value:?} is not tcp:ADDRESS:PORT, http://ADDRESS:PORT/PATH or exec:/ABSOLUTE/PATH")]
    HealthCheck { range: String, value: String },
    #[error("range {range:?}: health check {check:?}: {problem}")]
    HealthTiming {
        range: String,
        check: String,
        problem: String,
    },
    #[error("range {range:?}: health check {check:?} is listed twice")]
    DuplicateHealth { range: String, check: String },
}

pub(super) fn bgp(raw: RawBgp) -> Result<Bgp, BgpConfigError> {
    if raw.local_as == 0 {
        return Err(BgpConfigError::LocalAsZero);
    }
    let router_id =
        raw.router_id
            .trim()
            .parse::<Ipv4Addr>()
            .map_err(|_| BgpConfigError::RouterId {
                value: raw.router_id.clone(),
            })?;
    if raw.neighbors.is_empty() {
        return Err(BgpConfigError::NoNeighbors);
    }
    let mut neighbors: Vec<Neighbor> = Vec::new();
    for n in raw.neighbors {
        if n.remote_as == 0 {
            return Err(BgpConfigError::NeighborAsZero { address: n.address });
        }
        if neighbors.iter().any(|seen| seen.address == n.address) {
            return Err(BgpConfigError::DuplicateNeighbor { address: n.address });
        }
        if let Some(local) = n
            .local_address
            .filter(|l| l.is_ipv4() != n.address.is_ipv4())
        {
            return Err(BgpConfigError::NeighborFamily {
                address: n.address,
                local,
            });
        }
        neighbors.push(Neighbor {
            address: n.address,
            remote_as: n.remote_as,
            local_address: n.local_address,
        });
    }
    let communities = raw
        .communities
        .iter()
        .map(|c| community(c).ok_or_else(|| BgpConfigError::Community { value: c.clone() }))
        .collect::<Result<_, _>>()?;
    if raw.drain_seconds > MAX_DRAIN_SECONDS {
        return Err(BgpConfigError::DrainSeconds {
            value: raw.drain_seconds,
        });
    }
    Ok(Bgp {
        local_as: raw.local_as,
        router_id,
        neighbors,
        communities,
        drain_seconds: raw.drain_seconds,
        bird: raw.bird,
        birdc: raw.birdc,
    })
}

fn community(text: &str) -> Option<(u16, u16)> {
    let (asn, value) = text.trim().split_once(':')?;
    Some((asn.parse().ok()?, value.parse().ok()?))
}

/// A range's `announce` and `health`, checked against its accept mode and the
/// `[bgp]` section.
pub(super) fn announcement(
    range: &str,
    cidr: IpNet,
    accept: Accept,
    announce: bool,
    health: Vec<RawHealth>,
    bgp: Option<&Bgp>,
) -> Result<Vec<HealthCheck>, BgpConfigError> {
    let range = range.to_string();
    if !announce {
        if health.is_empty() {
            return Ok(Vec::new());
        }
        return Err(BgpConfigError::HealthWithoutAnnounce { range });
    }
    let Some(bgp) = bgp else {
        return Err(BgpConfigError::AnnounceWithoutBgp { range });
    };
    if accept == Accept::None {
        return Err(BgpConfigError::AnnounceWithoutAccept { range });
    }
    let v4 = cidr.addr().is_ipv4();
    if !bgp.neighbors.iter().any(|n| n.address.is_ipv4() == v4) {
        return Err(BgpConfigError::NoNeighborOfFamily {
            range,
            cidr,
            family: if v4 { "IPv4" } else { "IPv6" },
        });
    }
    let mut checks: Vec<HealthCheck> = Vec::new();
    for raw in health {
        let check = health_check(&range, raw)?;
        if checks.iter().any(|c| c.label == check.label) {
            return Err(BgpConfigError::DuplicateHealth {
                range,
                check: check.label,
            });
        }
        checks.push(check);
    }
    Ok(checks)
}

fn health_check(range: &str, raw: RawHealth) -> Result<HealthCheck, BgpConfigError> {
    let label = raw.check.trim().to_string();
    let probe = probe(&label).ok_or_else(|| BgpConfigError::HealthCheck {
        range: range.to_string(),
        value: raw.check.clone(),
    })?;
    let timing = |problem: String| BgpConfigError::HealthTiming {
        range: range.to_string(),
        check: label.clone(),
        problem,
    };
    if !INTERVAL_MS.contains(&raw.interval_ms) {
        return Err(timing(format!(
            "interval_ms = {} is out of range {}..={}",
            raw.interval_ms,
            INTERVAL_MS.start(),
            INTERVAL_MS.end()
        )));
    }
    if raw.timeout_ms == 0 || raw.timeout_ms >= raw.interval_ms {
        return Err(timing(format!(
            "timeout_ms = {} must be above 0 and below interval_ms ({})",
            raw.timeout_ms, raw.interval_ms
        )));
    }
    for (what, value) in [("rise", raw.rise), ("fall", raw.fall)] {
        if !RISE_FALL.contains(&value) {
            return Err(timing(format!(
                "{what} = {value} is out of range {}..={}",
                RISE_FALL.start(),
                RISE_FALL.end()
            )));
        }
    }
    Ok(HealthCheck {
        probe,
        interval: Duration::from_millis(raw.interval_ms),
        timeout: Duration::from_millis(raw.timeout_ms),
        rise: raw.rise,
        fall: raw.fall,
        label,
    })
}

fn probe(text: &str) -> Option<Probe> {
    if let Some(addr) = text.strip_prefix("tcp:") {
        return addr.parse().ok().map(Probe::Tcp);
    }
    if let Some(rest) = text.strip_prefix("http://") {
        let (addr, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = addr.parse().ok()?;
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        return Some(Probe::Http {
            addr,
            path: path.to_string(),
        });
    }
    if let Some(path) = text.strip_prefix("exec:") {
        let path = PathBuf::from(path);
        return path.is_absolute().then_some(Probe::Exec(path));
    }
    None
}
