//! Validation of a parsed config. Every error names the offending value.

use std::{collections::HashSet, path::PathBuf};

use ipnet::IpNet;
use vip_common::RANGE_NAME_MAX;

use super::{dense_len, Config, Range, RawConfig, RawRange};

/// Largest number of dense per-VIP slots (the sum of the sizes of IPv4 ranges of
/// /16 or longer); 16 Mi slots use 256 MiB per CPU.
pub const MAX_DENSE_SLOTS: u64 = 1 << 24;
pub const MAX_SPARSE_VIP_CAPACITY: u32 = 1 << 24;

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
    #[error("unknown interface {name:?}")]
    UnknownInterface { name: String },
    #[error("config has no [[range]]")]
    NoRanges,
    #[error("range name {name:?} is invalid: use 1 to {RANGE_NAME_MAX} characters from a-z, A-Z, 0-9, '_', '-', '.'")]
    InvalidName { name: String },
    #[error("range {name:?} is defined twice")]
    DuplicateName { name: String },
    #[error(
        "range {range:?}: invalid CIDR {cidr:?} (expected e.g. 192.0.2.0/24 or 2001:db8::/64)"
    )]
    InvalidCidr { range: String, cidr: String },
    #[error("range {range:?}: CIDR {cidr} has host bits set (did you mean {network}?)")]
    HostBitsSet {
        range: String,
        cidr: String,
        network: IpNet,
    },
    #[error("ranges {first:?} ({first_cidr}) and {second:?} ({second_cidr}) overlap")]
    Overlap {
        first: String,
        first_cidr: IpNet,
        second: String,
        second_cidr: IpNet,
    },
    #[error(
        "IPv4 ranges of /16 or longer cover {slots} addresses; the limit is {MAX_DENSE_SLOTS}"
    )]
    TooManyDenseSlots { slots: u64 },
    #[error("sparse_vip_capacity = {value} is out of range 1..={MAX_SPARSE_VIP_CAPACITY}")]
    SparseCapacity { value: u32 },
}

pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    if raw.interfaces.is_empty() {
        return Err(ConfigError::NoInterfaces);
    }
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
    if raw.ranges.is_empty() {
        return Err(ConfigError::NoRanges);
    }
    let ranges = raw
        .ranges
        .into_iter()
        .map(range)
        .collect::<Result<Vec<_>, _>>()?;
    check_unique_names(&ranges)?;
    check_no_overlap(&ranges)?;
    check_dense_slots(&ranges)?;
    Ok(Config {
        interfaces: raw.interfaces,
        xdp_mode: raw.xdp_mode,
        sparse_vip_capacity: raw.sparse_vip_capacity,
        ranges,
    })
}

fn range(raw: RawRange) -> Result<Range, ConfigError> {
    let name_ok = !raw.name.is_empty()
        && raw.name.len() <= RANGE_NAME_MAX
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        return Err(ConfigError::InvalidName { name: raw.name });
    }
    let cidr: IpNet = raw
        .cidr
        .trim()
        .parse()
        .map_err(|_| ConfigError::InvalidCidr {
            range: raw.name.clone(),
            cidr: raw.cidr.clone(),
        })?;
    if cidr.addr() != cidr.network() {
        return Err(ConfigError::HostBitsSet {
            range: raw.name,
            cidr: raw.cidr,
            network: cidr.trunc(),
        });
    }
    Ok(Range {
        name: raw.name,
        cidr,
    })
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

/// Two prefixes overlap only if one contains the other. Sorted by network address,
/// shortest prefix first, any range inside an earlier one is also inside the range
/// just before it (or that one is inside the earlier one too), so one pass suffices.
fn check_no_overlap(ranges: &[Range]) -> Result<(), ConfigError> {
    let mut sorted: Vec<&Range> = ranges.iter().collect();
    sorted.sort_by_key(|r| (r.cidr.network(), r.cidr.prefix_len()));
    let mut open: Option<&Range> = None;
    for range in sorted {
        if let Some(prev) = open {
            if prev.cidr.contains(&range.cidr) {
                return Err(ConfigError::Overlap {
                    first: prev.name.clone(),
                    first_cidr: prev.cidr,
                    second: range.name.clone(),
                    second_cidr: range.cidr,
                });
            }
        }
        open = Some(range);
    }
    Ok(())
}

fn check_dense_slots(ranges: &[Range]) -> Result<(), ConfigError> {
    let slots: u64 = ranges.iter().map(|r| dense_len(&r.cidr) as u64).sum();
    if slots > MAX_DENSE_SLOTS {
        return Err(ConfigError::TooManyDenseSlots { slots });
    }
    Ok(())
}
