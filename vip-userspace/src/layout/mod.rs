//! From a validated config to what the datapath maps hold: range ids, per-VIP
//! modes and dense slot bases. Pure, so the fixture tests and the daemon agree.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use vip_common::{
    cpu_table_stride, Counter, DecapConfig, RangeMeta, RangePolicy, RangeValue, SteerKey,
    FAMILY_V4, FAMILY_V6, PER_VIP_DENSE, POLICY_ENFORCED, POLICY_NONE,
};

use crate::config::{Config, Steer};

mod encode;
mod file;
mod pod_hex;
mod rewrite;
mod v4_index;
mod v6_blocks;

pub use encode::{
    decap_flags, dense_len, encap_flag, is_dense, port_bitmap, range_policy, sparse_mode,
};
pub use file::{LayoutFile, PendingLayout, PendingLayoutFile};
pub use rewrite::{block_writes, slash24_writes};
pub use v4_index::V4Index;
pub use v6_blocks::{range_candidates, RangeCandidate, V6BlockIndex};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSlot {
    pub name: String,
    pub cidr: IpNet,
    #[serde(with = "pod_hex")]
    pub value: RangeValue,
    /// Dense per-VIP slots of this range: its size when dense, its declared
    /// VIPs when sparse.
    pub dense_len: u32,
    #[serde(with = "pod_hex")]
    pub policy: RangePolicy,
    /// A sparse range's declared VIPs, in slot order from `value.dense_base`.
    #[serde(default)]
    pub declared: Vec<std::net::IpAddr>,
}

impl RangeSlot {
    /// The declared VIPs with their dense slots.
    pub fn declared_slots(&self) -> impl Iterator<Item = (std::net::IpAddr, u32)> + '_ {
        (self.value.dense_base..)
            .zip(&self.declared)
            .map(|(slot, addr)| (*addr, slot))
    }
}

/// Room a running datapath keeps for ranges added by a reload; a reload that
/// needs more is refused (restart to grow).
pub const RANGE_HEADROOM: u32 = 256;
pub const DENSE_HEADROOM: u32 = 65_536;
pub const L2_BLOCK_HEADROOM: u32 = 64;
pub const STEER_HEADROOM: u32 = 64;
pub const DECLARED_HEADROOM: u32 = 4096;
/// Allow lists a reload may add beyond twice the distinct lists at load; each
/// takes two 8 KiB port bitmaps.
pub const POLICY_HEADROOM: u32 = 16;
/// Distinct allow lists a config may have: with the room for a reload to
/// replace them all, 128 MiB of port bitmaps at most.
pub const MAX_ALLOW_LISTS: usize = 4096;

/// Map sizes, fixed when the datapath is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub ranges: u32,
    pub dense_slots: u32,
    pub l2_blocks: u32,
    /// Steer entries (sockets).
    pub steers: u32,
    /// Entries of the declared-VIP map (layout files of layout 6 and older
    /// have none: a datapath upgraded from one gets the headroom).
    #[serde(default = "declared_headroom")]
    pub declared: u32,
    /// Allow lists (policy ids) with port bitmaps in `MAP_PORTS`. 0 in a
    /// layout file of layout 7 or older: [`Layout::update`] sizes it then.
    #[serde(default)]
    pub policies: u32,
    /// Entries of `MAP_V6_BLOCKS` (a power of two). 0 in a layout file of
    /// layout 12 or older: [`Layout::update`] sizes it then.
    #[serde(default)]
    pub v6_blocks: u32,
}

fn declared_headroom() -> u32 {
    DECLARED_HEADROOM
}

/// Dense per-VIP slots a datapath can have (32 bytes of counters each, per CPU).
pub const MAX_DENSE_SLOTS: u64 = 1 << 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error(
        "dense ranges (IPv4 /16 or longer, IPv6 /112 or longer) cover {slots} addresses; the limit is {MAX_DENSE_SLOTS}"
    )]
    TooManyDenseSlots { slots: u64 },
    #[error("{needed} ranges do not fit the {capacity} the running datapath has room for; restart vip to grow")]
    Ranges { needed: usize, capacity: u32 },
    #[error("range {range:?} needs {len} per-VIP slots and the running datapath has no such free span; restart vip to grow")]
    DenseSlots { range: String, len: u32 },
    #[error("the old and new allow lists together need more than the {capacity} policy entries of the running datapath; restart vip to grow")]
    Policies { capacity: u32 },
    #[error("the config has {lists} different allow lists; the limit is {MAX_ALLOW_LISTS}")]
    TooManyAllowLists { lists: usize },
    #[error("the IPv4 ranges touch more /16s than the running datapath has room for ({capacity}); restart vip to grow")]
    Blocks { capacity: u32 },
    #[error("the IPv6 ranges of /112 or longer need more block entries than the running datapath has room for ({capacity}); restart vip to grow")]
    V6Blocks { capacity: u32 },
    #[error("the old and new steer entries together need more than the {capacity} the running datapath has room for; restart vip to grow")]
    Steers { capacity: u32 },
    #[error("the old and new declared VIPs together ({needed}) need more than the {capacity} the running datapath has room for; restart vip to grow")]
    Declared { needed: usize, capacity: u32 },
}

impl crate::errors::Blame for LayoutError {
    /// The config does not fit the running datapath: the operator restarts vip.
    fn is_user_error(&self) -> bool {
        true
    }
}

/// Saved in the run directory ([`LayoutFile`]) whenever the maps change, so a
/// restarted daemon can adopt the pinned maps and keep updating them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// In config order; each knows its range id.
    pub ranges: Vec<RangeSlot>,
    pub capacity: Capacity,
    /// Length of the sparse VIP table (fixed at load), see [`sparse_slots`].
    pub sparse_slots: u32,
    pub v4_index: V4Index,
    /// Where the /112 blocks of dense IPv6 ranges are in `MAP_V6_BLOCKS`.
    #[serde(default)]
    pub v6_index: V6BlockIndex,
    /// The epoch the next new range gets.
    pub next_epoch: u32,
    /// Distinct allow lists by policy id (`RangeValue::policy_id`).
    #[serde(with = "pod_hex::pairs")]
    pub policies: Vec<(u32, RangePolicy)>,
    /// The interfaces that decapsulate tunnels, and which.
    pub decap: Vec<DecapEntry>,
    /// Steer entries; `entry` indexes the steer maps.
    pub steers: Vec<SteerSlot>,
}

impl Layout {
    /// Dense slots per CPU and verdict: the length of each half of a CPU's
    /// stretch of `MAP_DENSE_COUNTS`, whole pages.
    pub fn dense_half(&self) -> u32 {
        cpu_table_stride(self.capacity.dense_slots, size_of::<Counter>() as u32)
    }

    /// The entries of `MAP_V4_SLASH24`, derived from the index and the ranges.
    pub fn slash24s(&self) -> Vec<vip_common::V4Slash24> {
        self.v4_index.slash24s(self.ranges.iter().map(|r| &r.value))
    }

    /// The entries of `MAP_V6_BLOCKS` this layout uses: blocks, declared
    /// IPv6 VIPs, sparse ranges by their /64 and removed ones, in entry order.
    pub fn v6_blocks(&self) -> Vec<(u32, vip_common::V6Block)> {
        let mut entries = self
            .v6_index
            .entries(self.ranges.iter().map(|r| (&r.cidr, &r.value)));
        entries.extend(self.v6_index.declared_entries(&self.ranges));
        entries.extend(self.v6_index.range_entries(&self.ranges));
        entries.sort_unstable_by_key(|&(entry, _)| entry);
        entries
    }

    /// Whether a fresh layout for `config` fits a datapath at all; checked
    /// with the config, before anything changes.
    pub fn check(config: &Config) -> Result<(), LayoutError> {
        let slots: u64 = config
            .ranges
            .iter()
            .map(|r| u64::from(range_dense_len(r)))
            .sum();
        if slots > MAX_DENSE_SLOTS {
            return Err(LayoutError::TooManyDenseSlots { slots });
        }
        let lists = distinct_allow_lists(config);
        if lists > MAX_ALLOW_LISTS {
            return Err(LayoutError::TooManyAllowLists { lists });
        }
        Ok(())
    }

    /// A fresh layout, with room for reloads to add ranges; for a config that
    /// passed [`Layout::check`].
    pub fn new(config: &Config) -> Layout {
        let dense: u32 = config.ranges.iter().map(range_dense_len).sum();
        let declared = config
            .ranges
            .iter()
            .map(|r| r.vips.len() as u32)
            .sum::<u32>();
        // Level 2 needs a block per /16 an IPv4 range touches.
        let slash16s: std::collections::BTreeSet<u32> = config
            .ranges
            .iter()
            .filter_map(|r| match r.cidr {
                IpNet::V4(net) => {
                    Some(u32::from(net.network()) >> 16..=u32::from(net.broadcast()) >> 16)
                }
                IpNet::V6(_) => None,
            })
            .flatten()
            .collect();
        let blocks = slash16s.len() as u32;
        let capacity = Capacity {
            ranges: config.ranges.len() as u32 + RANGE_HEADROOM,
            dense_slots: dense + DENSE_HEADROOM,
            l2_blocks: blocks + L2_BLOCK_HEADROOM,
            steers: config
                .ranges
                .iter()
                .map(|r| r.steer.len() as u32)
                .sum::<u32>()
                + STEER_HEADROOM,
            declared: declared + DECLARED_HEADROOM,
            policies: policy_capacity(config, 0),
            v6_blocks: v6_block_capacity(config),
        };
        Layout::allocate(config, None, capacity).expect("a fresh layout fits its own capacity")
    }

    /// The layout for `config` on a running datapath: ranges that are still there
    /// (same name and CIDR) keep their id, per-VIP slots and index blocks, so
    /// their counters carry on; new ones take free room.
    pub fn update(&self, config: &Config) -> Result<Layout, LayoutError> {
        let mut capacity = self.capacity;
        if capacity.policies == 0 {
            // From a layout before port bitmaps: their map is created by the
            // upgrade, with room for the ids in use and the new config's.
            let in_use = self.policies.iter().map(|(id, _)| id + 1).max();
            capacity.policies = policy_capacity(config, in_use.unwrap_or(0));
        }
        if capacity.v6_blocks == 0 {
            // From a layout before the IPv6 dense index: its map is created by
            // the upgrade.
            capacity.v6_blocks = v6_block_capacity(config);
        }
        Layout::allocate(config, Some(self), capacity)
    }

    fn allocate(
        config: &Config,
        previous: Option<&Layout>,
        capacity: Capacity,
    ) -> Result<Layout, LayoutError> {
        if config.ranges.len() > capacity.ranges as usize {
            return Err(LayoutError::Ranges {
                needed: config.ranges.len(),
                capacity: capacity.ranges,
            });
        }
        // A range stays if its name, CIDR and way of counting per VIP do;
        // anything else is a new range, whose counters start afresh. An IPv6
        // range that layouts before 13 made sparse stays so.
        let kept = |range: &crate::config::Range| {
            let mode = per_vip_mode(range);
            previous.and_then(|p| {
                p.ranges.iter().find(|r| {
                    r.name == range.name
                        && r.cidr == range.cidr
                        && r.declared == range.vips
                        && (r.value.per_vip_mode == mode
                            || (range.cidr.addr().is_ipv6()
                                && r.value.per_vip_mode == sparse_mode(range)))
                })
            })
        };
        // New ranges take nothing the previous layout used, not even what this
        // update frees: lookups may still reach a removed range's id or slots
        // until its entries are gone. Freed room serves the next update.
        let mut used_ids = vec![false; capacity.ranges as usize];
        let mut used_dense: Vec<(u32, u32)> = Vec::new();
        for old in previous.map_or(&[][..], |p| &p.ranges) {
            used_ids[old.value.range_id as usize] = true;
            if old.dense_len > 0 {
                used_dense.push((old.value.dense_base, old.dense_len));
            }
        }
        let mut next_epoch = previous.map_or(1, |p| p.next_epoch);
        let mut ranges = Vec::with_capacity(config.ranges.len());
        for range in &config.ranges {
            let policy = range_policy(range.allow.as_ref());
            if let Some(old) = kept(range) {
                ranges.push(RangeSlot {
                    policy,
                    ..old.clone()
                });
                continue;
            }
            let id = used_ids
                .iter()
                .position(|used| !used)
                .ok_or(LayoutError::Ranges {
                    needed: config.ranges.len(),
                    capacity: capacity.ranges,
                })?;
            used_ids[id] = true;
            let epoch = next_epoch;
            next_epoch += 1;
            let slots = range_dense_len(range);
            let base = if slots > 0 {
                let base =
                    first_fit(&used_dense, slots, capacity.dense_slots).ok_or_else(|| {
                        LayoutError::DenseSlots {
                            range: range.name.clone(),
                            len: slots,
                        }
                    })?;
                used_dense.push((base, slots));
                base
            } else {
                0
            };
            let value = RangeValue {
                range_id: id as u32,
                per_vip_mode: per_vip_mode(range),
                dense_base: base,
                network_v4_host: if is_dense(range) {
                    network_low32(range.cidr)
                } else {
                    0
                },
                epoch,
                policy_id: 0,
            };
            ranges.push(RangeSlot {
                name: range.name.clone(),
                cidr: range.cidr,
                value,
                dense_len: slots,
                policy,
                declared: range.vips.clone(),
            });
        }
        check_declared(&ranges, previous, capacity.declared)?;
        let policies = assign_policies(
            &mut ranges,
            previous,
            capacity.policies.min(capacity.ranges),
        )?;
        let v4_index = V4Index::build(
            ranges.iter().filter_map(|slot| match slot.cidr {
                IpNet::V4(net) => Some((slot.value.range_id, net)),
                IpNet::V6(_) => None,
            }),
            previous.map(|p| &p.v4_index),
            capacity.l2_blocks,
        )?;
        let v6_index = V6BlockIndex::build(
            ranges.iter().filter_map(|slot| match slot.cidr {
                IpNet::V6(net) if slot.value.per_vip_mode == PER_VIP_DENSE => Some(net),
                _ => None,
            }),
            ranges.iter().flat_map(|slot| {
                slot.declared.iter().filter_map(|addr| match addr {
                    std::net::IpAddr::V6(vip) => Some((*vip, slot.value.epoch)),
                    std::net::IpAddr::V4(_) => None,
                })
            }),
            &range_candidates(&ranges),
            previous.map(|p| &p.v6_index),
            capacity.v6_blocks,
        )?;
        Ok(Layout {
            capacity,
            sparse_slots: previous
                .map_or(sparse_slots(config.sparse_vip_capacity), |p| p.sparse_slots),
            v4_index,
            v6_index,
            next_epoch,
            policies,
            decap: config
                .decap
                .interfaces
                .iter()
                .map(|interface| DecapEntry {
                    interface: interface.clone(),
                    flags: decap_flags(&config.decap),
                    gue_port: config.decap.gue_port,
                })
                .collect(),
            steers: assign_steers(config, &ranges, previous, capacity.steers)?,
            ranges,
        })
    }
}

fn distinct_allow_lists(config: &Config) -> usize {
    let mut lists: Vec<RangePolicy> = config
        .ranges
        .iter()
        .filter(|r| r.allow.is_some())
        .map(|r| range_policy(r.allow.as_ref()))
        .collect();
    lists.sort_by(|a, b| bytemuck::bytes_of(a).cmp(bytemuck::bytes_of(b)));
    lists.dedup();
    lists.len()
}

/// Policy ids a datapath has room for: `in_use` (ids below it may be taken),
/// then twice the config's distinct allow lists, so that a reload can replace
/// every one, and some headroom.
fn policy_capacity(config: &Config, in_use: u32) -> u32 {
    in_use + 2 * distinct_allow_lists(config) as u32 + POLICY_HEADROOM
}

/// Dense per-VIP slots `range` takes: its size when dense, its declared VIPs
/// when sparse.
fn range_dense_len(range: &crate::config::Range) -> u32 {
    if is_dense(range) {
        dense_len(&range.cidr)
    } else {
        range.vips.len() as u32
    }
}

/// How a new range counts per VIP.
fn per_vip_mode(range: &crate::config::Range) -> u32 {
    if is_dense(range) {
        PER_VIP_DENSE
    } else {
        sparse_mode(range)
    }
}

/// `RangeValue::network_v4_host` of a dense range: its IPv4 network, or the
/// last four bytes of its IPv6 one, in host order.
fn network_low32(cidr: IpNet) -> u32 {
    match cidr {
        IpNet::V4(net) => u32::from(net.network()),
        IpNet::V6(net) => u128::from(net.network()) as u32,
    }
}

/// Entries of `MAP_V6_BLOCKS` for a datapath loaded with `config`.
fn v6_block_capacity(config: &Config) -> u32 {
    let dense: Vec<ipnet::Ipv6Net> = config
        .ranges
        .iter()
        .filter(|r| is_dense(r))
        .filter_map(|r| match r.cidr {
            IpNet::V6(net) => Some(net),
            IpNet::V4(_) => None,
        })
        .collect();
    let declared = config
        .ranges
        .iter()
        .filter(|r| matches!(r.cidr, IpNet::V6(_)))
        .map(|r| r.vips.len())
        .sum();
    // An upper bound of the ranges `range_candidates` may place.
    let sparse = config
        .ranges
        .iter()
        .filter(|r| !is_dense(r))
        .filter(|r| matches!(r.cidr, IpNet::V6(net) if net.prefix_len() >= 64))
        .count();
    V6BlockIndex::capacity(&dense, declared, sparse)
}

/// The declared-VIP map holds the old layout's entries and the new one's
/// until a reload completes.
fn check_declared(
    ranges: &[RangeSlot],
    previous: Option<&Layout>,
    capacity: u32,
) -> Result<(), LayoutError> {
    let all: std::collections::HashSet<std::net::IpAddr> = ranges
        .iter()
        .chain(previous.map_or(&[][..], |p| &p.ranges))
        .flat_map(|r| r.declared.iter().copied())
        .collect();
    if all.len() > capacity as usize {
        return Err(LayoutError::Declared {
            needed: all.len(),
            capacity,
        });
    }
    Ok(())
}

/// One steer entry of one range, at its index in the steer maps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteerSlot {
    pub range: String,
    pub range_id: u32,
    pub steer: Steer,
    pub entry: u32,
}

impl SteerSlot {
    pub fn key(&self) -> SteerKey {
        SteerKey {
            range_id: self.range_id,
            port_host: self.steer.port,
            proto: self.steer.proto,
            _pad: 0,
        }
    }
}

/// An entry that stays (same range, protocol and port) keeps its index, so its
/// socket and counts carry on; a new one takes an index neither layout uses.
fn assign_steers(
    config: &Config,
    ranges: &[RangeSlot],
    previous: Option<&Layout>,
    capacity: u32,
) -> Result<Vec<SteerSlot>, LayoutError> {
    let old: &[SteerSlot] = previous.map_or(&[], |p| &p.steers);
    let mut used = vec![false; capacity as usize];
    for slot in old {
        if let Some(u) = used.get_mut(slot.entry as usize) {
            *u = true;
        }
    }
    let mut out = Vec::new();
    for (range, slot) in config.ranges.iter().zip(ranges) {
        for steer in &range.steer {
            let kept = old.iter().find(|o| {
                o.range == range.name
                    && o.range_id == slot.value.range_id
                    && o.steer.proto == steer.proto
                    && o.steer.port == steer.port
            });
            let entry = match kept {
                Some(o) => o.entry,
                None => {
                    let free = used
                        .iter()
                        .position(|u| !u)
                        .ok_or(LayoutError::Steers { capacity })?;
                    used[free] = true;
                    free as u32
                }
            };
            out.push(SteerSlot {
                range: range.name.clone(),
                range_id: slot.value.range_id,
                steer: steer.clone(),
                entry,
            });
        }
    }
    Ok(out)
}

/// One interface that decapsulates: a `MAP_DECAP` entry, keyed by its ifindex
/// when written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecapEntry {
    pub interface: String,
    /// `DECAP_*` bits.
    pub flags: u32,
    pub gue_port: u16,
}

impl DecapEntry {
    pub fn value(&self) -> DecapConfig {
        DecapConfig {
            flags: self.flags,
            gue_port_be: self.gue_port.to_be_bytes(),
            _pad: [0; 2],
        }
    }
}

/// Gives each range the id of its allow list, one id per distinct list. Lists the
/// previous layout had keep their id; a new list takes an id the previous layout
/// did not use, so a live range never sees its policy entry rewritten.
fn assign_policies(
    ranges: &mut [RangeSlot],
    previous: Option<&Layout>,
    capacity: u32,
) -> Result<Vec<(u32, RangePolicy)>, LayoutError> {
    let old: &[(u32, RangePolicy)] = previous.map_or(&[], |p| &p.policies);
    let mut taken: Vec<bool> = vec![false; capacity as usize];
    for (id, _) in old {
        taken[*id as usize] = true;
    }
    let mut policies: Vec<(u32, RangePolicy)> = Vec::new();
    for slot in ranges.iter_mut() {
        if slot.policy.flags & POLICY_ENFORCED == 0 {
            slot.value.policy_id = POLICY_NONE;
            continue;
        }
        let known = policies
            .iter()
            .chain(old.iter())
            .find(|(_, p)| *p == slot.policy)
            .map(|(id, _)| *id);
        let id = match known {
            Some(id) => id,
            None => {
                let id = taken
                    .iter()
                    .position(|t| !t)
                    .ok_or(LayoutError::Policies { capacity })? as u32;
                taken[id as usize] = true;
                id
            }
        };
        if !policies.iter().any(|(p, _)| *p == id) {
            policies.push((id, slot.policy));
        }
        slot.value.policy_id = id;
    }
    Ok(policies)
}

/// Slots of the sparse table for `capacity` VIPs: twice as many, rounded up to a
/// power of two, so probe sequences stay short when the table is nearly full.
/// At least 64, the least of every layout, so that an upgrade keeps the
/// table's length: each CPU's stretch of either half then starts on a cache
/// line of its own, and from 256 slots on a page (`vip_common::CPU_TABLE_ALIGN`).
fn sparse_slots(capacity: u32) -> u32 {
    const LEAST: u32 = 64;
    capacity.saturating_mul(2).next_power_of_two().max(LEAST)
}

/// The lowest start of a free span of `len` slots below `capacity`, given the
/// (start, len) spans in use.
fn first_fit(used: &[(u32, u32)], len: u32, capacity: u32) -> Option<u32> {
    let mut spans = used.to_vec();
    spans.sort_unstable();
    let mut start = 0u32;
    for (base, span) in spans {
        if base >= start + len {
            break;
        }
        start = start.max(base + span);
    }
    (start.checked_add(len)? <= capacity).then_some(start)
}

impl RangeSlot {
    pub fn meta(&self) -> RangeMeta {
        let mut meta: RangeMeta = bytemuck::Zeroable::zeroed();
        meta.name[..self.name.len()].copy_from_slice(self.name.as_bytes());
        match self.cidr {
            IpNet::V4(net) => {
                meta.network_be[..4].copy_from_slice(&net.network().octets());
                meta.family = FAMILY_V4;
            }
            IpNet::V6(net) => {
                meta.network_be = net.network().octets();
                meta.family = FAMILY_V6;
            }
        }
        meta.prefix_len = u32::from(self.cidr.prefix_len());
        meta.dense_base = self.value.dense_base;
        // Declared VIPs are found through their map, with their addresses.
        if self.value.per_vip_mode == PER_VIP_DENSE {
            meta.dense_len = self.dense_len;
        }
        meta.epoch = self.value.epoch;
        meta
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(ranges: &[(&str, &str)]) -> Config {
        let mut text = String::from("interfaces = [\"lo\"]\n");
        for (name, cidr) in ranges {
            text.push_str(&format!(
                "[[range]]\nname = \"{name}\"\ncidr = \"{cidr}\"\n"
            ));
        }
        Config::parse(&text, Path::new("test")).unwrap()
    }

    /// What a restarted daemon adopts is exactly the layout the previous one
    /// saved, allow lists and all; a file of another version is not parsed.
    #[test]
    fn a_saved_layout_loads_back_equal() {
        let mut text = String::from("interfaces = [\"lo\"]\n");
        text.push_str("[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\nallow = [\"tcp/80\", \"udp/53-54\"]\n");
        text.push_str("[[range]]\nname = \"v6\"\ncidr = \"2001:db8::/64\"\n");
        let first = Layout::new(&Config::parse(&text, Path::new("test")).unwrap());
        let layout = first
            .update(&config(&[
                ("v6", "2001:db8::/64"),
                ("new", "203.0.113.0/25"),
            ]))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = LayoutFile::in_dir(dir.path());
        assert!(file.load().unwrap().is_none());
        file.save(&layout).unwrap();
        assert_eq!(file.load().unwrap(), Some(layout));
        std::fs::write(
            file.path(),
            format!(
                r#"{{"version": 999, "netns": {}, "whatever": 1}}"#,
                crate::netns::current().0
            ),
        )
        .unwrap();
        assert!(matches!(
            file.load().unwrap_err(),
            crate::run_files::RunFileError::Version { found: 999, .. }
        ));
        assert!(file.remove().unwrap());
        assert!(!file.remove().unwrap());
    }

    /// A pending file keeps its chain in order; one of the sixteenth
    /// session's form (a layout alone) reads as a chain of one, and that
    /// session's vip, which reads a layout alone, reads the last of a chain.
    #[test]
    fn a_pending_layout_keeps_its_chain_and_reads_the_older_form() {
        let first = Layout::new(&config(&[("a", "192.0.2.0/24")]));
        let second = first
            .update(&config(&[("a", "192.0.2.0/24"), ("b", "198.51.100.0/24")]))
            .unwrap();
        let third = second.update(&config(&[("c", "203.0.113.0/24")])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = PendingLayoutFile::in_dir(dir.path());
        let pending = PendingLayout::after(&[first.clone(), second.clone()], &third);
        file.save(&pending).unwrap();
        let loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded, pending);
        assert_eq!(
            loaded.chain(),
            vec![first.clone(), second.clone(), third.clone()]
        );

        let text = std::fs::read_to_string(file.path()).unwrap();
        let as_older: Layout = serde_json::from_str(&text).unwrap();
        assert_eq!(as_older, third);

        let mut older: serde_json::Value = serde_json::to_value(&second).unwrap();
        let written: serde_json::Value = serde_json::from_str(&text).unwrap();
        older["version"] = written["version"].clone();
        older["netns"] = written["netns"].clone();
        std::fs::write(file.path(), older.to_string()).unwrap();
        assert_eq!(file.load().unwrap().unwrap().chain(), vec![second]);
    }

    #[test]
    fn dense_bases_are_consecutive_and_sparse_ranges_take_none() {
        let layout = Layout::new(&config(&[
            ("a", "192.0.2.0/24"),
            ("v6", "2001:db8::/64"),
            ("b", "198.51.100.0/28"),
        ]));
        assert_eq!(layout.capacity.dense_slots, 256 + 16 + DENSE_HEADROOM);
        assert_eq!(layout.capacity.ranges, 3 + RANGE_HEADROOM);
        assert_eq!(
            layout.ranges[0].value,
            RangeValue {
                range_id: 0,
                per_vip_mode: PER_VIP_DENSE,
                dense_base: 0,
                network_v4_host: 0xc000_0200,
                epoch: 1,
                policy_id: POLICY_NONE,
            }
        );
        assert_eq!(
            layout.ranges[1].value.per_vip_mode,
            vip_common::PER_VIP_SPARSE
        );
        assert_eq!(layout.ranges[1].dense_len, 0);
        assert_eq!(layout.ranges[2].value.dense_base, 256);
        assert_eq!(layout.ranges[2].value.network_v4_host, 0xc633_6400);
        let meta = layout.ranges[2].meta();
        assert_eq!(&meta.name[..2], b"b\0");
        assert_eq!(&meta.network_be[..4], &[198, 51, 100, 0]);
        assert_eq!(
            (meta.prefix_len, meta.family, meta.dense_len),
            (28, FAMILY_V4, 16)
        );
    }

    #[test]
    fn ipv6_ranges_of_112_or_longer_are_dense_unless_they_declare_or_do_not_learn() {
        let text = "interfaces = [\"lo\"]\n\
            [[range]]\nname = \"wide\"\ncidr = \"2001:db8:1::/111\"\n\
            [[range]]\nname = \"block\"\ncidr = \"2001:db8:2::/112\"\n\
            [[range]]\nname = \"part\"\ncidr = \"2001:db8:3::1:40/122\"\n\
            [[range]]\nname = \"declares\"\ncidr = \"2001:db8:4::/120\"\nvips = [\"2001:db8:4::5\"]\n\
            [[range]]\nname = \"quiet\"\ncidr = \"2001:db8:5::/120\"\nlearn = false\n";
        let layout = Layout::new(&Config::parse(text, Path::new("test")).unwrap());
        let modes: Vec<(u32, u32, u32)> = layout
            .ranges
            .iter()
            .map(|r| (r.value.per_vip_mode, r.dense_len, r.value.dense_base))
            .collect();
        assert_eq!(
            modes,
            [
                (vip_common::PER_VIP_SPARSE, 0, 0),
                (PER_VIP_DENSE, 65_536, 0),
                (PER_VIP_DENSE, 64, 65_536),
                (vip_common::PER_VIP_SPARSE_DECLARED, 1, 65_600),
                (vip_common::PER_VIP_DECLARED_ONLY, 0, 0),
            ]
        );
        assert_eq!(layout.ranges[2].value.network_v4_host, 0x0001_0040);
        assert_eq!(
            layout.capacity.dense_slots,
            65_536 + 64 + 1 + DENSE_HEADROOM
        );
        assert_eq!(
            layout.capacity.v6_blocks, 128,
            "2 blocks, a declared VIP and 3 sparse ranges: 4 x 6 + 64, to a power of two"
        );
        let states: Vec<u32> = layout.v6_blocks().iter().map(|(_, b)| b.state).collect();
        assert_eq!(states.len(), 6);
        assert_eq!(
            states
                .iter()
                .filter(|&&s| s == vip_common::V6_BLOCK_DIRECT)
                .count(),
            2
        );
        let by_range: Vec<vip_common::V6Block> = layout
            .v6_blocks()
            .into_iter()
            .filter(|(_, b)| b.state == vip_common::V6_BLOCK_RANGE)
            .map(|(_, b)| b)
            .collect();
        let sparse = |i: usize, flags: u16| {
            let IpNet::V6(net) = layout.ranges[i].cidr else {
                panic!("an IPv6 range")
            };
            vip_common::V6Block::range(
                net.network().octets(),
                net.prefix_len(),
                layout.ranges[i].value.range_id,
                layout.ranges[i].value.epoch,
                flags,
            )
        };
        let complete = vip_common::V6_RANGE_DECLARED_COMPLETE;
        for expected in [
            sparse(0, complete),
            sparse(3, complete),
            sparse(4, complete),
        ] {
            assert!(by_range.contains(&expected), "{expected:?} in {by_range:?}");
        }
        let declared = layout
            .v6_blocks()
            .into_iter()
            .find(|(_, b)| b.state == vip_common::V6_BLOCK_DECLARED)
            .map(|(_, b)| b)
            .unwrap();
        assert_eq!(
            declared,
            vip_common::V6Block::declared(
                "2001:db8:4::5"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                layout.ranges[3].value.range_id,
                layout.ranges[3].value.epoch,
                65_600
            )
        );
        let meta = layout.ranges[2].meta();
        assert_eq!(
            (meta.family, meta.dense_len, meta.dense_base),
            (FAMILY_V6, 64, 65_536)
        );
    }

    /// A datapath upgraded from layout 12 or older counted every IPv6 range
    /// in the sparse table: a range it keeps stays sparse (its counters carry
    /// on), one added later is dense.
    #[test]
    fn an_ipv6_range_an_older_layout_made_sparse_stays_sparse() {
        let mut old = Layout::new(&config(&[("kept", "2001:db8:2::/112")]));
        old.ranges[0].value.per_vip_mode = vip_common::PER_VIP_SPARSE;
        old.ranges[0].dense_len = 0;
        old.capacity.dense_slots = DENSE_HEADROOM;
        old.capacity.v6_blocks = 0;
        old.v6_index = V6BlockIndex::default();
        let new = old
            .update(&config(&[
                ("kept", "2001:db8:2::/112"),
                ("new", "2001:db8:3::/120"),
            ]))
            .unwrap();
        assert_eq!(new.ranges[0], old.ranges[0]);
        assert_eq!(new.ranges[1].value.per_vip_mode, PER_VIP_DENSE);
        assert_eq!(
            new.capacity.v6_blocks, 128,
            "sized for the config, as at a load"
        );
        let states: Vec<u32> = new.v6_blocks().iter().map(|(_, b)| b.state).collect();
        assert_eq!(
            states
                .iter()
                .filter(|&&s| s == vip_common::V6_BLOCK_DIRECT)
                .count(),
            1,
            "the new range's block only"
        );
        assert_eq!(
            states
                .iter()
                .filter(|&&s| s == vip_common::V6_BLOCK_RANGE)
                .count(),
            1,
            "the kept range, sparse, by its /64"
        );
        assert_eq!(states.len(), 2);
        // A range whose way of counting changes is a new range.
        let quiet = new
            .update(&Config::parse(
                "interfaces = [\"lo\"]\n[[range]]\nname = \"new\"\ncidr = \"2001:db8:3::/120\"\nlearn = false\n",
                Path::new("test"),
            )
            .unwrap())
            .unwrap();
        assert_eq!(
            quiet.ranges[0].value.per_vip_mode,
            vip_common::PER_VIP_DECLARED_ONLY
        );
        assert_ne!(quiet.ranges[0].value.range_id, new.ranges[1].value.range_id);
        assert_eq!(quiet.v6_index.live, vec![], "its block is gone");
        assert_eq!(
            quiet.v6_index.removed.len(),
            2,
            "the block and the kept range's entry"
        );
        assert_eq!(quiet.v6_index.ranges.len(), 1, "the quiet range's");
    }

    #[test]
    fn updates_keep_what_stays_and_fill_freed_room() {
        let first = Layout::new(&config(&[
            ("a", "192.0.2.0/24"),
            ("b", "198.51.100.0/28"),
            ("c", "203.0.113.0/25"),
        ]));
        // b goes, d comes, c is renamed (so it is a new range).
        let second = first
            .update(&config(&[
                ("a", "192.0.2.0/24"),
                ("d", "198.51.100.32/28"),
                ("c2", "203.0.113.0/25"),
            ]))
            .unwrap();
        assert_eq!(second.ranges[0], first.ranges[0], "a is kept as it was");
        assert_eq!(
            second.ranges[1].value.range_id, 3,
            "d does not take b's id, freed just now"
        );
        assert_eq!(
            second.ranges[1].value.dense_base,
            256 + 16 + 128,
            "nor its slots"
        );
        assert_eq!(second.ranges[2].value.range_id, 4);
        assert_eq!(second.ranges[2].value.dense_base, 256 + 16 + 128 + 16);
        assert_eq!(second.capacity, first.capacity);
        // One update later, the room b and c left is free again.
        let third = second
            .update(&config(&[("a", "192.0.2.0/24"), ("e", "198.51.100.64/28")]))
            .unwrap();
        assert_eq!(third.ranges[1].value.range_id, 1);
        assert_eq!(third.ranges[1].value.dense_base, 256);
    }

    #[test]
    fn updates_past_the_room_left_are_refused() {
        let small = Layout::new(&config(&[("a", "192.0.2.0/24")]));
        let many: Vec<(String, String)> = (0..RANGE_HEADROOM + 2)
            .map(|i| (format!("r{i}"), format!("2001:db8:{i:x}::/64")))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
        assert!(matches!(
            small.update(&config(&many)),
            Err(LayoutError::Ranges { .. })
        ));
        let mut full = small.clone();
        full.capacity.dense_slots = 256;
        assert_eq!(
            full.update(&config(&[("a", "192.0.2.0/24"), ("b", "198.51.100.0/24")])),
            Err(LayoutError::DenseSlots {
                range: "b".into(),
                len: 256
            })
        );
    }

    #[test]
    fn ranges_with_the_same_allow_list_share_one_policy_entry() {
        let text = |b_allow: &str| {
            format!(
                "interfaces = [\"lo\"]\n[[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\nallow = [\"tcp/80\"]\n\
                 [[range]]\nname = \"b\"\ncidr = \"2001:db8::/64\"\nallow = [{b_allow}]\n\
                 [[range]]\nname = \"c\"\ncidr = \"198.51.100.0/24\"\n"
            )
        };
        let parse = |t: &str| Config::parse(t, Path::new("t")).unwrap();
        let first = Layout::new(&parse(&text("\"tcp/80\"")));
        let ids: Vec<u32> = first.ranges.iter().map(|r| r.value.policy_id).collect();
        assert_eq!(ids, [0, 0, POLICY_NONE], "a and b share a list, c has none");
        assert_eq!(first.policies.len(), 1);
        // b changes its list: it gets a new id, a keeps its own.
        let second = first.update(&parse(&text("\"udp/53\""))).unwrap();
        let ids: Vec<u32> = second.ranges.iter().map(|r| r.value.policy_id).collect();
        assert_eq!(ids, [0, 1, POLICY_NONE]);
        assert_eq!(second.policies.len(), 2);
    }

    #[test]
    fn policy_room_is_twice_the_lists_plus_headroom_and_sized_for_older_layout_files() {
        let text = |lists: usize| {
            let mut t = String::from("interfaces = [\"lo\"]\n");
            for i in 0..lists {
                t += &format!(
                    "[[range]]\nname = \"r{i}\"\ncidr = \"2001:db8:{i:x}::/64\"\nallow = [\"tcp/{}\"]\n",
                    i + 1
                );
            }
            t
        };
        let fresh = Layout::new(&parse(&text(3)));
        assert_eq!(fresh.capacity.policies, 2 * 3 + POLICY_HEADROOM);
        // A layout file of layout 7 has no such field (0): its ids in use are
        // kept free, and the new config's lists fit after them.
        let mut older = fresh.clone();
        older.capacity.policies = 0;
        older.policies[0].0 = 9;
        older.ranges[0].value.policy_id = 9;
        let upgraded = older.update(&parse(&text(4))).unwrap();
        assert_eq!(upgraded.capacity.policies, 10 + 2 * 4 + POLICY_HEADROOM);
        assert!(upgraded
            .policies
            .iter()
            .all(|(id, _)| *id < upgraded.capacity.policies));
        // With room for 4 ids, replacing all 3 lists at once needs 3 new ids
        // while the old ones are still in use: refused, and said so.
        let mut tight = fresh.clone();
        tight.capacity.policies = 4;
        assert_eq!(
            tight.update(&parse(&text(3).replace("tcp/", "udp/"))),
            Err(LayoutError::Policies { capacity: 4 })
        );
    }

    #[test]
    fn more_distinct_allow_lists_than_the_limit_are_refused() {
        let mut text = String::from("interfaces = [\"lo\"]\n");
        for i in 0..=MAX_ALLOW_LISTS {
            text += &format!(
                "[[range]]\nname = \"r{i}\"\ncidr = \"2001:db8:{i:x}::/64\"\nallow = [\"tcp/{}\"]\n",
                i + 1
            );
        }
        assert_eq!(
            Layout::check(&parse(&text)),
            Err(LayoutError::TooManyAllowLists {
                lists: MAX_ALLOW_LISTS + 1
            })
        );
    }

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("t")).unwrap()
    }

    const DECLARING: &str = "interfaces = [\"lo\"]\n[[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\n\
         [[range]]\nname = \"v6\"\ncidr = \"2001:db8::/64\"\nvips = [\"2001:db8::10\", \"2001:db8::1\"]\n";

    #[test]
    fn declared_vips_take_dense_slots_after_the_dense_ranges() {
        let layout = Layout::new(&parse(DECLARING));
        let v6 = &layout.ranges[1];
        assert_eq!(v6.value.per_vip_mode, vip_common::PER_VIP_SPARSE_DECLARED);
        assert_eq!((v6.value.dense_base, v6.dense_len), (256, 2));
        let slots: Vec<(std::net::IpAddr, u32)> = v6.declared_slots().collect();
        assert_eq!(
            slots,
            [
                ("2001:db8::10".parse().unwrap(), 256),
                ("2001:db8::1".parse().unwrap(), 257)
            ]
        );
        assert_eq!(layout.capacity.dense_slots, 256 + 2 + DENSE_HEADROOM);
        assert_eq!(layout.capacity.declared, 2 + DECLARED_HEADROOM);
        assert_eq!(
            v6.meta().dense_len,
            0,
            "stats finds declared VIPs by address"
        );
        let quiet = parse(&DECLARING.replace("vips = [", "learn = false\nvips = ["));
        let quiet = Layout::new(&quiet);
        assert_eq!(
            quiet.ranges[1].value.per_vip_mode,
            vip_common::PER_VIP_DECLARED_ONLY
        );
    }

    /// Changing a range's declared VIPs or learning makes it a new range (new
    /// id, new epoch, counters afresh), as changing its CIDR does.
    #[test]
    fn a_range_whose_declared_vips_change_is_replaced() {
        let first = Layout::new(&parse(DECLARING));
        let same = first.update(&parse(DECLARING)).unwrap();
        assert_eq!(same.ranges, first.ranges);
        let changed = first
            .update(&parse(
                &DECLARING.replace("\"2001:db8::1\"", "\"2001:db8::2\""),
            ))
            .unwrap();
        assert_eq!(changed.ranges[0], first.ranges[0]);
        let (old, new) = (&first.ranges[1].value, &changed.ranges[1].value);
        assert_ne!(new.range_id, old.range_id);
        assert_ne!(new.epoch, old.epoch);
        assert_eq!(new.dense_base, 258, "not the span the old range still uses");
        let unlearning = first
            .update(&parse(
                &DECLARING.replace("vips = [", "learn = false\nvips = ["),
            ))
            .unwrap();
        assert_ne!(unlearning.ranges[1].value.epoch, old.epoch);
    }

    #[test]
    fn declared_vips_past_the_room_left_are_refused() {
        let mut layout = Layout::new(&parse(DECLARING));
        layout.capacity.declared = 2;
        assert!(layout.update(&parse(DECLARING)).is_ok());
        // The old two and the new two (three addresses) are in the map together
        // for a moment.
        let changed = parse(&DECLARING.replace("\"2001:db8::1\"", "\"2001:db8::2\""));
        assert_eq!(
            layout.update(&changed).unwrap_err(),
            LayoutError::Declared {
                needed: 3,
                capacity: 2
            }
        );
    }

    #[test]
    fn first_fit_finds_the_lowest_gap() {
        assert_eq!(first_fit(&[], 16, 100), Some(0));
        assert_eq!(first_fit(&[(0, 16), (32, 16)], 16, 100), Some(16));
        assert_eq!(first_fit(&[(0, 16), (32, 16)], 17, 100), Some(48));
        assert_eq!(first_fit(&[(0, 90)], 11, 100), None);
    }
}
