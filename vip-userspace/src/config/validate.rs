//! Validation of a parsed config. Every error names the offending value.

use std::{collections::HashSet, net::Ipv6Addr, path::PathBuf};

use ipnet::{IpNet, Ipv6Net};
use vip_common::{
    DENSE_MIN_PREFIX_V4, IPPROTO_TCP, IPPROTO_UDP, MAX_ALLOW_ENTRIES, RANGE_NAME_MAX,
};

use super::{
    bgp::BgpConfigError, Accept, AllowList, Bgp, Config, Decap, Encap, Range, RawConfig, RawRange,
    RawRoute, RawRouter, RawSteer, Route, Router, Rule, Steer, XdpMode,
};

/// Largest `sparse_vip_capacity` (slots per CPU).
pub const MAX_SPARSE_VIP_CAPACITY: u32 = 1 << 24;
/// Declared VIPs a config may list, over all ranges: each takes a dense slot
/// (32 bytes per CPU) and an entry in one hash map.
pub const MAX_DECLARED_VIPS: usize = 65_536;
/// Bounds of `sparse_idle_seconds`: the daemon sweeps every half of it.
pub const SPARSE_IDLE_SECONDS: std::ops::RangeInclusive<u32> = 2..=86_400;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {}{location}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        location: String,
        message: String,
    },
    #[error("config lists no interfaces")]
    NoInterfaces,
    #[error("interface {name:?} is listed twice")]
    DuplicateInterface { name: String },
    #[error("config has no [[range]]")]
    NoRanges,
    #[error("range name {name:?} is invalid: use 1 to {RANGE_NAME_MAX} characters from a-z, A-Z, 0-9, '_', '-', '.'")]
    InvalidName { name: String },
    #[error("range {name:?} is defined twice")]
    DuplicateName { name: String },
    #[error("{owner}: invalid CIDR {cidr:?} (expected e.g. 192.0.2.0/24 or 2001:db8::/64)")]
    InvalidCidr { owner: String, cidr: String },
    #[error("{owner}: CIDR {cidr} has host bits set (did you mean {network}?)")]
    HostBitsSet {
        owner: String,
        cidr: String,
        network: IpNet,
    },
    #[error(
        "range {range:?}: {cidr} is broader than /{limit}; set allow_broad = true if you mean it"
    )]
    TooBroad {
        range: String,
        cidr: IpNet,
        limit: u8,
    },
    #[error(
        "range {range:?}: accept = \"alias\" makes only one address local for IPv6 ({cidr}); use accept = \"route\""
    )]
    AliasV6 { range: String, cidr: IpNet },
    #[error("range {range:?}: {cidr} holds IPv4-mapped addresses (::ffff:0:0/96), which are IPv4 VIPs to vip; write the IPv4 range instead")]
    V4Mapped { range: String, cidr: IpNet },
    #[error("route {cidr}: next hop {via} is not of the same family")]
    RouteFamily { cidr: IpNet, via: std::net::IpAddr },
    #[error("route {cidr}: next hop {via} is link-local: name its interface with dev = \"...\"")]
    LinkLocalWithoutDev { cidr: IpNet, via: std::net::IpAddr },
    #[error("route {cidr}: dev {dev:?} is not an interface name")]
    InvalidDev { cidr: IpNet, dev: String },
    #[error("route {cidr} is listed twice")]
    DuplicateRoute { cidr: IpNet },
    #[error("range {range:?}: allow entry {entry:?} is not tcp/PORT, tcp/FIRST-LAST, udp/PORT, udp/FIRST-LAST or icmp")]
    InvalidAllow { range: String, entry: String },
    #[error("range {range:?}: {count} allow entries, at most {max} (icmp aside)")]
    TooManyAllow {
        range: String,
        count: usize,
        max: usize,
    },
    #[error("router.rp_filter = {value}: expected 0, 1 or 2")]
    RpFilter { value: u8 },
    #[error("ranges {first:?} and {second:?} have the same CIDR {cidr}")]
    SameCidr {
        first: String,
        second: String,
        cidr: IpNet,
    },
    #[error("range {range:?} ({cidr}) lies in range {outer:?} ({outer_cidr}): an IPv6 range inside another must count per VIP densely (a /112 or longer that learns every VIP: no vips, no learn = false)")]
    NestedSparseV6 {
        range: String,
        cidr: IpNet,
        outer: String,
        outer_cidr: IpNet,
    },
    #[error("range {range:?}: vips entry {vip} lies in range {inner:?} ({inner_cidr}), which judges and counts it")]
    DeclaredInInner {
        vip: std::net::IpAddr,
        range: String,
        inner: String,
        inner_cidr: IpNet,
    },
    #[error("sparse_vip_capacity = {value} is out of range 1..={MAX_SPARSE_VIP_CAPACITY}")]
    SparseCapacity { value: u32 },
    #[error("sparse_idle_seconds = {value} is out of range {}..={}", SPARSE_IDLE_SECONDS.start(), SPARSE_IDLE_SECONDS.end())]
    SparseIdle { value: u32 },
    #[error("range {range:?}: vips entry {value:?} is not an address in {cidr}")]
    DeclaredVip {
        range: String,
        value: String,
        cidr: IpNet,
    },
    #[error("range {range:?}: vips lists {addr} twice")]
    DuplicateDeclaredVip {
        range: String,
        addr: std::net::IpAddr,
    },
    #[error("range {range:?}: {what} applies to sparse ranges (IPv6, IPv4 wider than /16); every address of {cidr} has its own row already")]
    DeclaredOnDense {
        range: String,
        cidr: IpNet,
        what: &'static str,
    },
    #[error("the ranges declare {count} VIPs in all; at most {MAX_DECLARED_VIPS}")]
    TooManyDeclared { count: usize },
    #[error("metrics.listen = {value:?}: expected ADDRESS:PORT (e.g. 127.0.0.1:9669 or [::1]:9669) or \"off\"")]
    MetricsListen { value: String },
    #[error("decap_interfaces lists {name:?}, which is not in interfaces")]
    DecapInterface { name: String },
    #[error("gue_port = 0: expected a UDP port, 1 to 65535")]
    GuePort,
    #[error("decap needs XDP: xdp_mode = \"tc\" cannot decapsulate")]
    DecapNeedsXdp,
    #[error("range {range:?}: steer match {value:?} is not tcp/PORT or udp/PORT")]
    SteerMatch { range: String, value: String },
    #[error("range {range:?}: steer to {value:?} is not ADDRESS:PORT (e.g. 127.0.0.1:8080 or [::1]:5353)")]
    SteerTo { range: String, value: String },
    #[error("range {range:?}: steering needs the range's addresses to be local; set accept = \"alias\" or \"route\"")]
    SteerNeedsAccept { range: String },
    #[error("range {range:?}: steer match {value:?} is listed twice")]
    DuplicateSteer { range: String, value: String },
    #[error(transparent)]
    Bgp(#[from] BgpConfigError),
}

/// Broadest prefix a range may have without `allow_broad`.
pub const BROADEST_V4: u8 = 8;
pub const BROADEST_V6: u8 = 32;

pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut seen = HashSet::new();
    for name in &raw.interfaces {
        if !seen.insert(name) {
            return Err(ConfigError::DuplicateInterface { name: name.clone() });
        }
    }
    if raw.sparse_vip_capacity == 0 || raw.sparse_vip_capacity > MAX_SPARSE_VIP_CAPACITY {
        return Err(ConfigError::SparseCapacity {
            value: raw.sparse_vip_capacity,
        });
    }
    if !SPARSE_IDLE_SECONDS.contains(&raw.sparse_idle_seconds) {
        return Err(ConfigError::SparseIdle {
            value: raw.sparse_idle_seconds,
        });
    }
    let bgp = raw.bgp.map(super::bgp::bgp).transpose()?;
    let ranges = raw
        .ranges
        .into_iter()
        .map(|r| range(r, bgp.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let declared: usize = ranges.iter().map(|r| r.vips.len()).sum();
    if declared > MAX_DECLARED_VIPS {
        return Err(ConfigError::TooManyDeclared { count: declared });
    }
    check_unique_names(&ranges)?;
    check_nesting(&ranges)?;
    let routes = raw
        .routes
        .into_iter()
        .map(route)
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::new();
    for route in &routes {
        if !seen.insert(route.cidr) {
            return Err(ConfigError::DuplicateRoute { cidr: route.cidr });
        }
    }
    let router = router(raw.router, &routes)?;
    let accepts_locally = ranges.iter().any(|r| r.accept != Accept::None);
    let listen = raw
        .metrics
        .listen
        .unwrap_or_else(|| super::DEFAULT_METRICS_LISTEN.to_string());
    let metrics_listen = match listen.trim() {
        "off" => None,
        text => Some(text.parse().map_err(|_| ConfigError::MetricsListen {
            value: listen.clone(),
        })?),
    };
    let decap = decap(
        &raw.interfaces,
        raw.xdp_mode,
        raw.decap,
        raw.gue_port,
        raw.decap_interfaces,
    )?;
    Ok(Config {
        decap,
        interfaces: raw.interfaces,
        xdp_mode: raw.xdp_mode,
        sparse_vip_capacity: raw.sparse_vip_capacity,
        sparse_idle_seconds: raw.sparse_idle_seconds,
        arp_sysctls: raw.arp_sysctls.unwrap_or(accepts_locally),
        ranges,
        routes,
        router,
        metrics_listen,
        bgp,
    })
}

fn decap(
    interfaces: &[String],
    xdp_mode: XdpMode,
    mut encaps: Vec<Encap>,
    gue_port: u16,
    decap_interfaces: Option<Vec<String>>,
) -> Result<Decap, ConfigError> {
    encaps.sort();
    encaps.dedup();
    if gue_port == 0 {
        return Err(ConfigError::GuePort);
    }
    if !encaps.is_empty() && xdp_mode == XdpMode::Tc {
        return Err(ConfigError::DecapNeedsXdp);
    }
    let chosen = decap_interfaces.unwrap_or_else(|| interfaces.to_vec());
    if let Some(name) = chosen.iter().find(|n| !interfaces.contains(n)) {
        return Err(ConfigError::DecapInterface { name: name.clone() });
    }
    Ok(Decap {
        interfaces: if encaps.is_empty() {
            Vec::new()
        } else {
            chosen
        },
        encaps,
        gue_port,
    })
}

fn parse_cidr(owner: &str, text: &str) -> Result<IpNet, ConfigError> {
    let cidr: IpNet = text.trim().parse().map_err(|_| ConfigError::InvalidCidr {
        owner: owner.to_string(),
        cidr: text.to_string(),
    })?;
    if cidr.addr() != cidr.network() {
        return Err(ConfigError::HostBitsSet {
            owner: owner.to_string(),
            cidr: text.to_string(),
            network: cidr.trunc(),
        });
    }
    Ok(cidr)
}

fn route(raw: RawRoute) -> Result<Route, ConfigError> {
    let cidr = parse_cidr("route", &raw.cidr)?;
    if cidr.addr().is_ipv4() != raw.via.is_ipv4() {
        return Err(ConfigError::RouteFamily { cidr, via: raw.via });
    }
    if let Some(dev) = &raw.dev {
        let bad = dev.is_empty()
            || dev.len() >= IFNAMSIZ
            || dev == "."
            || dev == ".."
            || dev.contains(|c: char| c == '/' || c == ':' || c.is_whitespace());
        if bad {
            return Err(ConfigError::InvalidDev {
                cidr,
                dev: dev.clone(),
            });
        }
    }
    if is_link_local(raw.via) && raw.dev.is_none() {
        return Err(ConfigError::LinkLocalWithoutDev { cidr, via: raw.via });
    }
    Ok(Route {
        cidr,
        via: raw.via,
        dev: raw.dev,
    })
}

/// The kernel's limit on an interface name, its NUL included.
const IFNAMSIZ: usize = 16;

/// A next hop that only means something on one link.
fn is_link_local(via: std::net::IpAddr) -> bool {
    match via {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => v6.is_unicast_link_local(),
    }
}

fn router(raw: RawRouter, routes: &[Route]) -> Result<Router, ConfigError> {
    if let Some(value) = raw.rp_filter.filter(|v| *v > 2) {
        return Err(ConfigError::RpFilter { value });
    }
    let any = |v4: bool| routes.iter().any(|r| r.cidr.addr().is_ipv4() == v4);
    Ok(Router {
        ip_forward: raw.ip_forward.or(any(true).then_some(true)),
        ipv6_forwarding: raw.ipv6_forwarding.or(any(false).then_some(true)),
        rp_filter: raw.rp_filter,
    })
}

fn range(raw: RawRange, bgp: Option<&Bgp>) -> Result<Range, ConfigError> {
    let name_ok = !raw.name.is_empty()
        && raw.name.len() <= RANGE_NAME_MAX
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        return Err(ConfigError::InvalidName { name: raw.name });
    }
    let cidr = parse_cidr(&format!("range {:?}", raw.name), &raw.cidr)?;
    let limit = if cidr.addr().is_ipv4() {
        BROADEST_V4
    } else {
        BROADEST_V6
    };
    if cidr.prefix_len() < limit && !raw.allow_broad {
        return Err(ConfigError::TooBroad {
            range: raw.name,
            cidr,
            limit,
        });
    }
    if overlaps_v4_mapped(cidr) {
        return Err(ConfigError::V4Mapped {
            range: raw.name,
            cidr,
        });
    }
    if raw.accept == Accept::Alias && !cidr.addr().is_ipv4() {
        return Err(ConfigError::AliasV6 {
            range: raw.name,
            cidr,
        });
    }
    let allow = raw
        .allow
        .map(|entries| allow_list(&raw.name, entries))
        .transpose()?;
    let steer = steer_entries(&raw.name, raw.accept, raw.steer)?;
    let vips = declared_vips(&raw.name, cidr, raw.vips)?;
    let learn = raw.learn.unwrap_or(true);
    // Dense ranges (see `layout::dense_len`) have a row for every address.
    if matches!(cidr, IpNet::V4(net) if net.prefix_len() >= DENSE_MIN_PREFIX_V4) {
        let what = match (vips.is_empty(), learn) {
            (false, _) => Some("vips"),
            (true, false) => Some("learn = false"),
            (true, true) => None,
        };
        if let Some(what) = what {
            return Err(ConfigError::DeclaredOnDense {
                range: raw.name,
                cidr,
                what,
            });
        }
    }
    // A whole /24 of IPv4 series is fine; a /64 of IPv6 could be anything.
    let small = matches!(cidr, IpNet::V4(net) if net.prefix_len() >= 24);
    let health =
        super::bgp::announcement(&raw.name, cidr, raw.accept, raw.announce, raw.health, bgp)?;
    Ok(Range {
        name: raw.name,
        cidr,
        accept: raw.accept,
        allow_broad: raw.allow_broad,
        allow,
        per_vip_metrics: raw.per_vip_metrics.unwrap_or(small),
        max_vip_series: raw.max_vip_series.unwrap_or(super::DEFAULT_MAX_VIP_SERIES),
        steer,
        vips,
        learn,
        announce: raw.announce,
        health,
    })
}

fn declared_vips(
    range: &str,
    cidr: IpNet,
    raw: Vec<String>,
) -> Result<Vec<std::net::IpAddr>, ConfigError> {
    let mut seen = HashSet::new();
    let mut vips = Vec::with_capacity(raw.len());
    for value in raw {
        let addr: std::net::IpAddr = value
            .trim()
            .parse()
            .ok()
            .filter(|addr| cidr.contains(addr))
            .ok_or_else(|| ConfigError::DeclaredVip {
                range: range.to_string(),
                value: value.clone(),
                cidr,
            })?;
        if !seen.insert(addr) {
            return Err(ConfigError::DuplicateDeclaredVip {
                range: range.to_string(),
                addr,
            });
        }
        vips.push(addr);
    }
    Ok(vips)
}

fn steer_entries(
    range: &str,
    accept: Accept,
    raw: Vec<RawSteer>,
) -> Result<Vec<Steer>, ConfigError> {
    if !raw.is_empty() && accept == Accept::None {
        return Err(ConfigError::SteerNeedsAccept {
            range: range.to_string(),
        });
    }
    let mut entries: Vec<Steer> = Vec::new();
    for entry in raw {
        let bad_match = || ConfigError::SteerMatch {
            range: range.to_string(),
            value: entry.matches.clone(),
        };
        let (proto, port) = entry.matches.trim().split_once('/').ok_or_else(bad_match)?;
        let proto = match proto {
            "tcp" => IPPROTO_TCP,
            "udp" => IPPROTO_UDP,
            _ => return Err(bad_match()),
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(bad_match)?;
        let to = entry
            .to
            .trim()
            .parse()
            .ok()
            .filter(|to: &std::net::SocketAddr| to.port() != 0)
            .ok_or_else(|| ConfigError::SteerTo {
                range: range.to_string(),
                value: entry.to.clone(),
            })?;
        if entries.iter().any(|e| e.proto == proto && e.port == port) {
            return Err(ConfigError::DuplicateSteer {
                range: range.to_string(),
                value: entry.matches,
            });
        }
        entries.push(Steer { proto, port, to });
    }
    Ok(entries)
}

fn allow_list(range: &str, entries: Vec<String>) -> Result<AllowList, ConfigError> {
    let rules = entries
        .into_iter()
        .map(|entry| {
            Rule::parse(&entry).ok_or_else(|| ConfigError::InvalidAllow {
                range: range.to_string(),
                entry,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = rules.iter().filter(|r| **r != Rule::Icmp).count();
    if count > MAX_ALLOW_ENTRIES {
        return Err(ConfigError::TooManyAllow {
            range: range.to_string(),
            count,
            max: MAX_ALLOW_ENTRIES,
        });
    }
    Ok(AllowList { rules })
}

fn check_unique_names(ranges: &[Range]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for range in ranges {
        if !seen.insert(range.name.as_str()) {
            return Err(ConfigError::DuplicateName {
                name: range.name.clone(),
            });
        }
    }
    Ok(())
}

/// Whether an IPv6 range shares addresses with `::ffff:0:0/96`, the keys the
/// datapath gives IPv4 VIPs (`vip_common::VipAddr::from_v4_be`).
fn overlaps_v4_mapped(cidr: IpNet) -> bool {
    let IpNet::V6(cidr) = cidr else {
        return false;
    };
    let mapped = Ipv6Net::new(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96).expect("a /96");
    cidr.contains(&mapped) || mapped.contains(&cidr)
}

/// Refuses what nesting cannot mean: two ranges with one CIDR, an IPv6 range
/// inside another that counts sparsely (its VIPs' slots in the sparse table
/// would keep finding the outer range), and a declared VIP that an inner range
/// would count.
fn check_nesting(ranges: &[Range]) -> Result<(), ConfigError> {
    let parents = super::nesting::parents(ranges);
    for (index, parent) in parents.iter().enumerate() {
        let Some(outer) = *parent else { continue };
        let (inner, outer) = (&ranges[index], &ranges[outer]);
        if inner.cidr == outer.cidr {
            return Err(ConfigError::SameCidr {
                first: outer.name.clone(),
                second: inner.name.clone(),
                cidr: inner.cidr,
            });
        }
        if let IpNet::V6(net) = inner.cidr {
            let dense = net.prefix_len() >= vip_common::DENSE_MIN_PREFIX_V6
                && inner.vips.is_empty()
                && inner.learn;
            if !dense {
                return Err(ConfigError::NestedSparseV6 {
                    range: inner.name.clone(),
                    cidr: inner.cidr,
                    outer: outer.name.clone(),
                    outer_cidr: outer.cidr,
                });
            }
        }
        let mut at = *parent;
        while let Some(a) = at {
            let ancestor = &ranges[a];
            if let Some(vip) = ancestor.vips.iter().find(|vip| inner.cidr.contains(*vip)) {
                return Err(ConfigError::DeclaredInInner {
                    vip: *vip,
                    range: ancestor.name.clone(),
                    inner: inner.name.clone(),
                    inner_cidr: inner.cidr,
                });
            }
            at = parents[a];
        }
    }
    Ok(())
}

impl crate::errors::Blame for ConfigError {
    /// Every config error is in the file the operator wrote.
    fn is_user_error(&self) -> bool {
        true
    }
}
