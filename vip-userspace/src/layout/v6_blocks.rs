//! The IPv6 dense index (see vip-common's `v6_blocks`): where each /112 block
//! of a dense IPv6 range sits in `MAP_V6_BLOCKS`, and what its entry holds;
//! beside them, declared IPv6 VIPs (layout 16) and sparse ranges alone in
//! their /64 (layout 17).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
};

use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};
use vip_common::{
    v6_block_hash, v6_range_hash, RangeValue, V6Block, PER_VIP_DENSE, V6_BLOCKS_MAX,
    V6_BLOCK_DIRECT, V6_BLOCK_LPM, V6_BLOCK_PROBES, V6_BLOCK_REMOVED, V6_DECLARED_PROBES,
    V6_RANGE_DECLARED_COMPLETE, V6_RANGE_PROBES,
};

use super::{LayoutError, RangeSlot};

/// Entries of `MAP_V6_BLOCKS` for a fresh datapath: four per block at least
/// (so that a block rarely waits for a second probe), and room for reloads.
pub const V6_BLOCK_HEADROOM: u32 = 64;

/// The placement of blocks, and of declared IPv6 VIPs, in `MAP_V6_BLOCKS`. A
/// block that stays keeps its entry, so a reload never moves one under
/// traffic; a removed block's entry is marked removed (a lookup goes on past
/// it) and can be taken again by a later reload. The same goes for a declared
/// VIP whose range stays the same incarnation (epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V6BlockIndex {
    /// (entry, the block's first address) of every block of a dense range.
    pub live: Vec<(u32, Ipv6Addr)>,
    /// Entries of blocks and declared VIPs that were removed (state
    /// `V6_BLOCK_REMOVED`).
    pub removed: Vec<u32>,
    /// (entry, VIP, its range's epoch) of the declared IPv6 VIPs placed
    /// (layout 16). A fast path: a VIP that finds no free entry within its
    /// probes, or past [`DECLARED_LOAD`], is left out and found the slow way.
    #[serde(default)]
    pub declared: Vec<(u32, Ipv6Addr, u32)>,
    /// (entry, network, epoch, `V6_RANGE_*` flags) of the sparse ranges
    /// placed by their /64 (layout 17), a fast path as declared VIPs are:
    /// placed after them, as far as room allows.
    #[serde(default)]
    pub ranges: Vec<(u32, Ipv6Net, u32, u16)>,
}

/// A sparse IPv6 range that may have an entry for its /64: one of /64 or
/// longer that is the only range of /64 or longer in its /64, so that no
/// range lies inside it and no other shares the /64's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeCandidate {
    pub net: Ipv6Net,
    pub epoch: u32,
    /// Its declared VIPs (IPv6 ones), whose entries decide its flags.
    pub declared: Vec<Ipv6Addr>,
}

/// The candidates among `ranges`: ranges of every mode count as sharing a
/// /64, only sparse ones get an entry.
pub fn range_candidates(ranges: &[RangeSlot]) -> Vec<RangeCandidate> {
    let mut by_64: BTreeMap<u64, Vec<(Ipv6Net, &RangeSlot)>> = BTreeMap::new();
    for slot in ranges {
        if let IpNet::V6(net) = slot.cidr {
            if net.prefix_len() >= 64 {
                let upper = (u128::from(net.network()) >> 64) as u64;
                by_64.entry(upper).or_default().push((net, slot));
            }
        }
    }
    by_64
        .into_values()
        .filter_map(|group| match group.as_slice() {
            &[(net, slot)] if slot.value.per_vip_mode != PER_VIP_DENSE => Some(RangeCandidate {
                net,
                epoch: slot.value.epoch,
                declared: slot
                    .declared
                    .iter()
                    .filter_map(|addr| match addr {
                        std::net::IpAddr::V6(vip) => Some(*vip),
                        std::net::IpAddr::V4(_) => None,
                    })
                    .collect(),
            }),
            _ => None,
        })
        .collect()
}

/// Declared VIPs are placed while blocks and declared VIPs together hold less
/// than this share of the table: the share a fresh datapath's sizing leaves
/// at most (four entries each), so that declared VIPs a reload adds never
/// make a new block's four probes likelier to find no free entry than at a
/// load, and a sparse packet's probe by block reads about 1.4 entries at
/// worst (linear probing's unsuccessful search at a quarter).
pub const DECLARED_LOAD: (u32, u32) = (1, 4);

/// The /112 block of an address.
fn block_of(addr: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(addr) & !0xffff)
}

fn words(addr: Ipv6Addr) -> [u64; 2] {
    bytemuck::cast(addr.octets())
}

impl V6BlockIndex {
    /// `ranges`: the networks of the dense IPv6 ranges; `declared`: the
    /// declared IPv6 VIPs, each with its range's epoch; `sparse`: the sparse
    /// ranges that may have an entry by their /64 ([`range_candidates`]);
    /// `len`: the table's length, a power of two. Blocks must all place;
    /// declared VIPs, then sparse ranges, are placed as far as room allows.
    pub fn build(
        ranges: impl IntoIterator<Item = Ipv6Net>,
        declared: impl IntoIterator<Item = (Ipv6Addr, u32)>,
        sparse: &[RangeCandidate],
        previous: Option<&V6BlockIndex>,
        len: u32,
    ) -> Result<V6BlockIndex, LayoutError> {
        let blocks: BTreeSet<Ipv6Addr> = ranges
            .into_iter()
            .map(|net| block_of(net.network()))
            .collect();
        let old: BTreeMap<Ipv6Addr, u32> = previous
            .map(|p| {
                p.live
                    .iter()
                    .map(|&(entry, block)| (block, entry))
                    .collect()
            })
            .unwrap_or_default();
        let old_declared: BTreeMap<(Ipv6Addr, u32), u32> = previous
            .map(|p| {
                p.declared
                    .iter()
                    .map(|&(entry, vip, epoch)| ((vip, epoch), entry))
                    .collect()
            })
            .unwrap_or_default();
        let old_ranges: BTreeMap<(Ipv6Net, u32, u16), u32> = previous
            .map(|p| {
                p.ranges
                    .iter()
                    .map(|&(entry, net, epoch, flags)| ((net, epoch, flags), entry))
                    .collect()
            })
            .unwrap_or_default();
        // Entries the previous layout had live stay untouched by new blocks,
        // even those this update frees: lookups may still be reading them.
        let mut taken: BTreeSet<u32> = old.values().copied().collect();
        taken.extend(old_declared.values().copied());
        taken.extend(old_ranges.values().copied());
        let mut live = Vec::with_capacity(blocks.len());
        for &block in blocks.iter().filter(|b| old.contains_key(b)) {
            live.push((old[&block], block));
        }
        let mask = len - 1;
        for &block in blocks.iter().filter(|b| !old.contains_key(b)) {
            let start = v6_block_hash(words(block));
            let entry = (0..V6_BLOCK_PROBES)
                .map(|i| start.wrapping_add(i) & mask)
                .find(|entry| !taken.contains(entry))
                .ok_or(LayoutError::V6Blocks { capacity: len })?;
            taken.insert(entry);
            live.push((entry, block));
        }
        live.sort_unstable();
        let declared: BTreeSet<(Ipv6Addr, u32)> = declared.into_iter().collect();
        let mut placed: Vec<(u32, Ipv6Addr, u32)> = declared
            .iter()
            .filter_map(|key| old_declared.get(key).map(|&entry| (entry, key.0, key.1)))
            .collect();
        let room = (len / DECLARED_LOAD.1 * DECLARED_LOAD.0) as usize;
        for &(vip, epoch) in declared.iter().filter(|k| !old_declared.contains_key(k)) {
            if live.len() + placed.len() >= room {
                break;
            }
            let start = v6_block_hash(words(vip));
            if let Some(entry) = (0..V6_DECLARED_PROBES)
                .map(|i| start.wrapping_add(i) & mask)
                .find(|entry| !taken.contains(entry))
            {
                taken.insert(entry);
                placed.push((entry, vip, epoch));
            }
        }
        placed.sort_unstable();
        let placed_vips: BTreeSet<(Ipv6Addr, u32)> =
            placed.iter().map(|&(_, vip, epoch)| (vip, epoch)).collect();
        let keys: Vec<(Ipv6Net, u32, u16)> = sparse
            .iter()
            .map(|c| {
                let complete = c
                    .declared
                    .iter()
                    .all(|v| placed_vips.contains(&(*v, c.epoch)));
                let flags = if complete {
                    V6_RANGE_DECLARED_COMPLETE
                } else {
                    0
                };
                (c.net, c.epoch, flags)
            })
            .collect();
        let mut range_entries: Vec<(u32, Ipv6Net, u32, u16)> = keys
            .iter()
            .filter_map(|key| {
                old_ranges
                    .get(key)
                    .map(|&entry| (entry, key.0, key.1, key.2))
            })
            .collect();
        for &(net, epoch, flags) in keys.iter().filter(|k| !old_ranges.contains_key(k)) {
            if live.len() + placed.len() + range_entries.len() >= room {
                break;
            }
            let start = v6_range_hash(words(net.network())[0]);
            if let Some(entry) = (0..V6_RANGE_PROBES)
                .map(|i| start.wrapping_add(i) & mask)
                .find(|entry| !taken.contains(entry))
            {
                taken.insert(entry);
                range_entries.push((entry, net, epoch, flags));
            }
        }
        range_entries.sort_unstable();
        let live_entries: BTreeSet<u32> = live
            .iter()
            .map(|&(entry, _)| entry)
            .chain(placed.iter().map(|&(entry, ..)| entry))
            .chain(range_entries.iter().map(|&(entry, ..)| entry))
            .collect();
        let mut removed: BTreeSet<u32> = previous
            .map(|p| p.removed.iter().copied().collect())
            .unwrap_or_default();
        removed.extend(old.values().copied());
        removed.extend(old_declared.values().copied());
        removed.extend(old_ranges.values().copied());
        removed.retain(|entry| !live_entries.contains(entry));
        Ok(V6BlockIndex {
            live,
            removed: removed.into_iter().collect(),
            declared: placed,
            ranges: range_entries,
        })
    }

    /// What `MAP_V6_BLOCKS` holds at each entry of a declared VIP, from the
    /// ranges that declare them (a VIP whose range is not among `ranges` any
    /// more has no entry to write).
    pub fn declared_entries(&self, ranges: &[RangeSlot]) -> Vec<(u32, V6Block)> {
        let mut slots: BTreeMap<(Ipv6Addr, u32), (u32, u32)> = BTreeMap::new();
        for range in ranges {
            for (addr, slot) in range.declared_slots() {
                if let std::net::IpAddr::V6(vip) = addr {
                    slots.insert((vip, range.value.epoch), (range.value.range_id, slot));
                }
            }
        }
        self.declared
            .iter()
            .filter_map(|&(entry, vip, epoch)| {
                let &(range_id, slot) = slots.get(&(vip, epoch))?;
                Some((
                    entry,
                    V6Block::declared(vip.octets(), range_id, epoch, slot),
                ))
            })
            .collect()
    }

    /// What `MAP_V6_BLOCKS` holds at each entry of a sparse range placed by
    /// its /64, from the ranges (a range not among `ranges` any more has no
    /// entry to write).
    pub fn range_entries(&self, ranges: &[RangeSlot]) -> Vec<(u32, V6Block)> {
        let ids: BTreeMap<(IpNet, u32), u32> = ranges
            .iter()
            .map(|r| ((r.cidr, r.value.epoch), r.value.range_id))
            .collect();
        self.ranges
            .iter()
            .filter_map(|&(entry, net, epoch, flags)| {
                let &range_id = ids.get(&(IpNet::V6(net), epoch))?;
                Some((
                    entry,
                    V6Block::range(
                        net.network().octets(),
                        net.prefix_len(),
                        range_id,
                        epoch,
                        flags,
                    ),
                ))
            })
            .collect()
    }

    /// The length of the smallest table that places `ranges`' blocks with
    /// headroom: at least four entries per block, per declared VIP
    /// (`declared` of them) and per sparse range that may be placed by its
    /// /64 (`sparse`), and `V6_BLOCK_HEADROOM`, doubled until every block
    /// lies within its probes.
    pub fn capacity(ranges: &[Ipv6Net], declared: usize, sparse: usize) -> u32 {
        let blocks: BTreeSet<Ipv6Addr> = ranges.iter().map(|n| block_of(n.network())).collect();
        let entries = 4 * (blocks.len() + declared + sparse) as u32 + V6_BLOCK_HEADROOM;
        let mut len = entries.next_power_of_two();
        loop {
            if V6BlockIndex::build(ranges.iter().copied(), [], &[], None, len).is_ok() {
                return len;
            }
            assert!(
                len < V6_BLOCKS_MAX,
                "no placement of {} blocks",
                blocks.len()
            );
            len *= 2;
        }
    }

    /// What `MAP_V6_BLOCKS` holds at each entry this index uses, from the
    /// ranges (all of a layout's; only dense IPv6 ones lie in blocks).
    pub fn entries<'a>(
        &self,
        ranges: impl IntoIterator<Item = (&'a IpNet, &'a RangeValue)>,
    ) -> Vec<(u32, V6Block)> {
        let mut in_block: BTreeMap<Ipv6Addr, Vec<(Ipv6Net, &RangeValue)>> = BTreeMap::new();
        for (cidr, value) in ranges {
            if let (IpNet::V6(net), PER_VIP_DENSE) = (cidr, value.per_vip_mode) {
                in_block
                    .entry(block_of(net.network()))
                    .or_default()
                    .push((*net, value));
            }
        }
        let mut entries = Vec::with_capacity(self.live.len() + self.removed.len());
        for &(entry, block) in &self.live {
            let mut value = V6Block {
                prefix_be: block.octets(),
                state: V6_BLOCK_LPM,
                ..V6Block::default()
            };
            if let Some([(net, range)]) = in_block.get(&block).map(Vec::as_slice) {
                let first = (u128::from(net.network()) & 0xffff) as u16;
                value.state = V6_BLOCK_DIRECT;
                value.policy_id = range.policy_id;
                value.dense_base = range.dense_base;
                value.first_offset_host = first;
                value.span_host = ((1u32 << (128 - net.prefix_len())) - 1) as u16;
            }
            entries.push((entry, value));
        }
        for &entry in &self.removed {
            entries.push((
                entry,
                V6Block {
                    state: V6_BLOCK_REMOVED,
                    ..V6Block::default()
                },
            ));
        }
        entries.sort_unstable_by_key(|&(entry, _)| entry);
        entries
    }
}

#[cfg(test)]
mod tests {
    use vip_common::{v6_block_of, V6_BLOCK_EMPTY};

    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    /// What the datapath's lookup finds for `addr` in a table of `len`
    /// entries filled with `entries`: its entry, or None.
    fn lookup(entries: &[(u32, V6Block)], len: u32, addr: &str) -> Option<V6Block> {
        let mut table = vec![V6Block::default(); len as usize];
        for &(entry, value) in entries {
            table[entry as usize] = value;
        }
        let addr: Ipv6Addr = addr.parse().unwrap();
        let (prefix, _) = v6_block_of(words(addr));
        let start = v6_block_hash(prefix);
        for i in 0..V6_BLOCK_PROBES {
            let e = table[(start.wrapping_add(i) & (len - 1)) as usize];
            match e.state {
                V6_BLOCK_EMPTY => return None,
                V6_BLOCK_REMOVED => continue,
                _ if e.prefix_words() == prefix => return Some(e),
                _ => continue,
            }
        }
        None
    }

    fn dense(id: u32, base: u32) -> RangeValue {
        RangeValue {
            range_id: id,
            per_vip_mode: PER_VIP_DENSE,
            dense_base: base,
            policy_id: 7,
            ..RangeValue::default()
        }
    }

    #[test]
    fn a_block_with_one_range_is_direct_and_one_with_more_asks_the_trie() {
        let ranges = [
            (IpNet::V6(net("2001:db8:0:1::/112")), dense(0, 100)),
            (IpNet::V6(net("2001:db8::5:100/120")), dense(1, 70_000)),
            (IpNet::V6(net("2001:db8::7:10/128")), dense(2, 5)),
            (IpNet::V6(net("2001:db8::7:20/127")), dense(3, 6)),
            (
                IpNet::V6(net("2001:db8:1::/64")),
                RangeValue {
                    per_vip_mode: vip_common::PER_VIP_SPARSE,
                    ..RangeValue::default()
                },
            ),
        ];
        let nets: Vec<Ipv6Net> = ranges[..4]
            .iter()
            .map(|(c, _)| match c {
                IpNet::V6(n) => *n,
                IpNet::V4(_) => unreachable!(),
            })
            .collect();
        let len = V6BlockIndex::capacity(&nets, 0, 0);
        let index = V6BlockIndex::build(nets, [], &[], None, len).unwrap();
        assert_eq!(len, 128, "3 blocks: 4 x 3 + 64, to a power of two");
        assert_eq!(index.live.len(), 3);
        let entries = index.entries(ranges.iter().map(|(c, v)| (c, v)));
        let whole = lookup(&entries, len, "2001:db8:0:1::beef").unwrap();
        assert_eq!(
            (whole.state, whole.dense_base, whole.policy_id),
            (V6_BLOCK_DIRECT, 100, 7)
        );
        assert_eq!((whole.first_offset_host, whole.span_host), (0, 0xffff));
        let part = lookup(&entries, len, "2001:db8::5:1ff").unwrap();
        assert_eq!(
            (
                part.state,
                part.dense_base,
                part.first_offset_host,
                part.span_host
            ),
            (V6_BLOCK_DIRECT, 70_000, 0x100, 0xff)
        );
        assert_eq!(
            lookup(&entries, len, "2001:db8::7:21").unwrap().state,
            V6_BLOCK_LPM
        );
        assert_eq!(
            lookup(&entries, len, "2001:db8:1::1"),
            None,
            "sparse: no block"
        );
        assert_eq!(lookup(&entries, len, "2001:db8::6:1"), None);
    }

    #[test]
    fn blocks_that_stay_keep_their_entry_and_removed_ones_are_passed_over() {
        // Every block hashed to one of few entries: a table of 4 forces probes.
        let first = V6BlockIndex::build(
            [
                net("2001:db8::1:0/112"),
                net("2001:db8::2:0/112"),
                net("2001:db8::3:0/112"),
            ],
            [],
            &[],
            None,
            4,
        )
        .unwrap();
        let entry_of = |index: &V6BlockIndex, block: &str| {
            let block: Ipv6Addr = block.parse().unwrap();
            index
                .live
                .iter()
                .find(|(_, b)| *b == block)
                .map(|(e, _)| *e)
        };
        let second = V6BlockIndex::build(
            [
                net("2001:db8::2:0/112"),
                net("2001:db8::3:0/112"),
                net("2001:db8::4:0/112"),
            ],
            [],
            &[],
            Some(&first),
            4,
        )
        .unwrap();
        for block in ["2001:db8::2:0", "2001:db8::3:0"] {
            assert_eq!(entry_of(&second, block), entry_of(&first, block), "{block}");
        }
        let freed = entry_of(&first, "2001:db8::1:0").unwrap();
        assert_ne!(
            entry_of(&second, "2001:db8::4:0"),
            Some(freed),
            "a new block never takes an entry freed by the same update"
        );
        assert_eq!(second.removed, vec![freed]);
        let value = |_: &Ipv6Addr| dense(0, 0);
        let ranges: Vec<(IpNet, RangeValue)> = second
            .live
            .iter()
            .map(|(_, b)| (IpNet::V6(Ipv6Net::new(*b, 112).unwrap()), value(b)))
            .collect();
        let entries = second.entries(ranges.iter().map(|(c, v)| (c, v)));
        for block in ["2001:db8::2:5", "2001:db8::3:5", "2001:db8::4:5"] {
            assert_eq!(
                lookup(&entries, 4, block).map(|e| e.state),
                Some(V6_BLOCK_DIRECT),
                "{block} is found past the removed entry"
            );
        }
        assert_eq!(lookup(&entries, 4, "2001:db8::1:5"), None);
        // The next update may take the freed entry again.
        let third = V6BlockIndex::build(
            [
                net("2001:db8::2:0/112"),
                net("2001:db8::3:0/112"),
                net("2001:db8::4:0/112"),
                net("2001:db8::5:0/112"),
            ],
            [],
            &[],
            Some(&second),
            4,
        )
        .unwrap();
        assert_eq!(entry_of(&third, "2001:db8::5:0"), Some(freed));
        assert!(third.removed.is_empty());
        assert!(matches!(
            V6BlockIndex::build([net("2001:db8::9:0/112")], [], &[], Some(&third), 4),
            Err(LayoutError::V6Blocks { capacity: 4 })
        ));
    }

    /// Where the datapath's `lookup::v6_declared` finds `vip`, if anywhere.
    fn declared_entry(index: &V6BlockIndex, len: u32, vip: Ipv6Addr) -> Option<u32> {
        let start = v6_block_hash(words(vip));
        let placed: BTreeMap<u32, Ipv6Addr> =
            index.declared.iter().map(|&(e, v, _)| (e, v)).collect();
        let taken: BTreeSet<u32> = index.live.iter().map(|&(e, _)| e).collect();
        for i in 0..V6_DECLARED_PROBES {
            let entry = start.wrapping_add(i) & (len - 1);
            match placed.get(&entry) {
                Some(&v) if v == vip => return Some(entry),
                Some(_) => continue,
                None if taken.contains(&entry) || index.removed.contains(&entry) => continue,
                None => return None,
            }
        }
        None
    }

    fn vips(count: u16) -> Vec<(Ipv6Addr, u32)> {
        (1..=count)
            .map(|i| (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i), 9))
            .collect()
    }

    #[test]
    fn declared_vips_of_one_block_place_apart_and_are_found_by_address() {
        let declared = vips(1_000);
        let len = V6BlockIndex::capacity(&[net("2001:db8:7::/112")], declared.len(), 0);
        assert_eq!(len, 4_096, "4 x 1,001 + 64, to a power of two");
        let index =
            V6BlockIndex::build([net("2001:db8:7::/112")], declared.clone(), &[], None, len)
                .unwrap();
        assert_eq!(index.declared.len(), 1_000, "all placed");
        for &(vip, _) in &declared {
            assert!(declared_entry(&index, len, vip).is_some(), "{vip}");
        }
        let entries: BTreeSet<u32> = index
            .live
            .iter()
            .map(|&(e, _)| e)
            .chain(index.declared.iter().map(|&(e, ..)| e))
            .collect();
        assert_eq!(entries.len(), 1_001, "one entry each");
    }

    #[test]
    fn a_declared_vip_keeps_its_entry_while_its_range_stays_and_moves_when_replaced() {
        let first = V6BlockIndex::build([], vips(3), &[], None, 64).unwrap();
        let entry_of = |index: &V6BlockIndex, i: u16| {
            let vip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i);
            index
                .declared
                .iter()
                .find(|&&(_, v, _)| v == vip)
                .map(|&(e, _, epoch)| (e, epoch))
        };
        // ::1 stays, ::2 goes, ::3's range is replaced (epoch 10), ::4 comes.
        let mut next = vips(4);
        next.remove(1);
        next[1].1 = 10;
        let second = V6BlockIndex::build([], next, &[], Some(&first), 64).unwrap();
        assert_eq!(entry_of(&second, 1), entry_of(&first, 1));
        assert_eq!(entry_of(&second, 2), None);
        let (old_three, _) = entry_of(&first, 3).unwrap();
        let (new_three, epoch) = entry_of(&second, 3).unwrap();
        assert_eq!(epoch, 10);
        assert_ne!(new_three, old_three, "never rewritten in place");
        let (old_two, _) = entry_of(&first, 2).unwrap();
        let (four, _) = entry_of(&second, 4).unwrap();
        assert!(
            ![old_two, old_three].contains(&four),
            "a new entry never takes one freed by the same update"
        );
        let mut removed = vec![old_two, old_three];
        removed.sort_unstable();
        assert_eq!(second.removed, removed);
    }

    #[test]
    fn declared_vips_leave_three_quarters_of_the_table_free() {
        let index =
            V6BlockIndex::build([net("2001:db8:7::/112")], vips(100), &[], None, 64).unwrap();
        assert_eq!(index.live.len(), 1);
        assert_eq!(index.declared.len(), 15, "16 of 64 entries at most");
    }

    /// The bench's fullest declaring config at 100 ranges (`many_declared`
    /// in tests/src/bench.rs): 2001:db8::7 and 4,029 VIPs from 2001:db8::1:0
    /// declared, and 50 sparse /64s (`web6`, 2001:db8::/64, and the fillers
    /// 2001:db8:0:1::/64 to 2001:db8:0:31::/64) by their /64, fill the index
    /// to just under a quarter (4 x 4,080 + 64 is 16,384). The learned VIP's
    /// block, 2001:db8::/112, finds three entries in a row from its first
    /// probe on, so its lookup reads four entries where an empty index has it
    /// read one.
    #[test]
    fn the_bench_fills_a_learned_vips_block_probe_with_declared_entries() {
        let first = u128::from("2001:db8::1:0".parse::<Ipv6Addr>().unwrap());
        let declared: Vec<(Ipv6Addr, u32)> = std::iter::once(("2001:db8::7".parse().unwrap(), 1))
            .chain((0..4_029).map(|i| (Ipv6Addr::from(first + i), 1)))
            .collect();
        let sparse: Vec<RangeCandidate> = (0..50u16)
            .map(|group| RangeCandidate {
                net: Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0, group, 0, 0, 0, 0), 64).unwrap(),
                epoch: 2,
                declared: vec![],
            })
            .collect();
        let len = V6BlockIndex::capacity(&[], declared.len(), sparse.len());
        assert_eq!(len, 16_384);
        let index = V6BlockIndex::build([], declared, &sparse, None, len).unwrap();
        assert_eq!(index.declared.len(), 4_030);
        assert_eq!(index.ranges.len(), 50);
        let taken: BTreeSet<u32> = index
            .declared
            .iter()
            .map(|&(e, ..)| e)
            .chain(index.ranges.iter().map(|&(e, ..)| e))
            .collect();
        let start = v6_block_hash(words("2001:db8::".parse().unwrap()));
        let crossed = (0..V6_BLOCK_PROBES)
            .take_while(|i| taken.contains(&(start.wrapping_add(*i) & (len - 1))))
            .count();
        assert_eq!(crossed, 3);
    }

    /// What the datapath's `lookup::v6_range` finds for `addr` in a table of
    /// `len` entries filled with `entries`: the range's entry, if it holds
    /// the address.
    fn range_lookup(entries: &[(u32, V6Block)], len: u32, addr: &str) -> Option<V6Block> {
        let mut table = vec![V6Block::default(); len as usize];
        for &(entry, value) in entries {
            table[entry as usize] = value;
        }
        let addr = words(addr.parse().unwrap());
        let start = v6_range_hash(addr[0]);
        for i in 0..V6_RANGE_PROBES {
            let e = table[(start.wrapping_add(i) & (len - 1)) as usize];
            match e.state {
                V6_BLOCK_EMPTY => return None,
                vip_common::V6_BLOCK_RANGE if e.prefix_words()[0] == addr[0] => {
                    return e.range_holds(addr).then_some(e);
                }
                _ => {}
            }
        }
        None
    }

    fn layout_of(text: &str) -> super::super::Layout {
        let config = crate::config::Config::parse(
            &format!("interfaces = [\"lo\"]\n{text}"),
            std::path::Path::new("test"),
        )
        .unwrap();
        super::super::Layout::new(&config)
    }

    fn range_text(name: &str, cidr: &str, extra: &str) -> String {
        format!("[[range]]\nname = \"{name}\"\ncidr = \"{cidr}\"\n{extra}")
    }

    #[test]
    fn only_a_sparse_range_alone_in_its_64_gets_an_entry() {
        let text: String = [
            ("alone", "2001:db8:1::/64", ""),
            ("outer", "2001:db8:2::/64", ""),
            ("inner", "2001:db8:2::100/120", ""),
            ("left", "2001:db8:3::/80", ""),
            ("right", "2001:db8:3:0:1::/80", ""),
            ("wide", "2001:db8:100::/48", ""),
            ("dense", "2001:db8:4::/112", ""),
            ("narrow", "2001:db8:5::/96", "learn = false\n"),
            (
                "declares",
                "2001:db8:6::/120",
                "vips = [\"2001:db8:6::9\"]\n",
            ),
        ]
        .iter()
        .map(|(name, cidr, extra)| range_text(name, cidr, extra))
        .collect();
        let layout = layout_of(&text);
        let nets: Vec<String> = range_candidates(&layout.ranges)
            .iter()
            .map(|c| c.net.to_string())
            .collect();
        assert_eq!(
            nets,
            ["2001:db8:1::/64", "2001:db8:5::/96", "2001:db8:6::/120"]
        );
        let entries = layout.v6_blocks();
        let len = layout.capacity.v6_blocks;
        let found = |addr: &str| range_lookup(&entries, len, addr).map(|e| e.range_id());
        let id = |name: &str| {
            layout
                .ranges
                .iter()
                .find(|r| r.name == name)
                .unwrap()
                .value
                .range_id
        };
        assert_eq!(found("2001:db8:1::ffff:1"), Some(id("alone")));
        assert_eq!(found("2001:db8:5::1:2"), Some(id("narrow")));
        assert_eq!(found("2001:db8:5::1:0:0"), None, "in the /64, not the /96");
        assert_eq!(found("2001:db8:6::9"), Some(id("declares")));
        for other in [
            "2001:db8:2::1",
            "2001:db8:2::101",
            "2001:db8:3::1",
            "2001:db8:100::1",
        ] {
            assert_eq!(found(other), None, "{other} asks the trie");
        }
        let flags = |name: &str| {
            entries
                .iter()
                .find(|(_, e)| e.state == vip_common::V6_BLOCK_RANGE && e.range_id() == id(name))
                .map(|(_, e)| e.range_flags())
        };
        assert_eq!(flags("declares"), Some(V6_RANGE_DECLARED_COMPLETE));
        assert_eq!(
            flags("alone"),
            Some(V6_RANGE_DECLARED_COMPLETE),
            "nothing to declare"
        );
    }

    #[test]
    fn a_range_with_a_declared_vip_left_out_is_not_complete() {
        let candidate = |declared: Vec<Ipv6Addr>| RangeCandidate {
            net: net("2001:db8:1::/64"),
            epoch: 3,
            declared,
        };
        let a: Ipv6Addr = "2001:db8:1::a".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1::b".parse().unwrap();
        // `b` is declared but not given to the index (as if it found no room).
        let index = V6BlockIndex::build([], [(a, 3)], &[candidate(vec![a, b])], None, 64).unwrap();
        assert_eq!(index.ranges.len(), 1);
        assert_eq!(index.ranges[0].3, 0);
        let complete =
            V6BlockIndex::build([], [(a, 3)], &[candidate(vec![a])], Some(&index), 64).unwrap();
        assert_eq!(complete.ranges[0].3, V6_RANGE_DECLARED_COMPLETE);
        assert_ne!(
            complete.ranges[0].0, index.ranges[0].0,
            "never rewritten in place"
        );
        assert_eq!(complete.removed, vec![index.ranges[0].0]);
        let kept =
            V6BlockIndex::build([], [(a, 3)], &[candidate(vec![a])], Some(&complete), 64).unwrap();
        assert_eq!(kept.ranges, complete.ranges, "kept while it stays the same");
    }

    #[test]
    fn ranges_are_placed_after_declared_vips_within_a_quarter_of_the_table() {
        let candidates: Vec<RangeCandidate> = (1..=40u16)
            .map(|i| RangeCandidate {
                net: Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0, i, 0, 0, 0, 0), 64).unwrap(),
                epoch: 1,
                declared: vec![],
            })
            .collect();
        let index = V6BlockIndex::build([], vips(10), &candidates, None, 64).unwrap();
        assert_eq!(index.declared.len(), 10);
        assert_eq!(index.ranges.len(), 6, "16 of 64 entries at most");
    }
}
