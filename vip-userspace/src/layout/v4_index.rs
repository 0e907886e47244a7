//! The IPv4 direct index that fronts the LPM trie (see vip-ebpf's lookup.rs):
//! level 1 maps each /16 to a block of level 2, which maps each /24 to the one
//! most specific range covering it, or to "ask the trie" when ranges longer
//! than /24 lie in it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::Ipv4Net;
use vip_common::{
    RangeValue, V4Slash24, PER_VIP_DENSE, V4_DIRECT_DENSE, V4_L2_BLOCK, V4_SLOT_LPM, V4_SLOT_NONE,
};

use super::LayoutError;

/// Contents of `MAP_V4_L1` (65,536 entries, mostly 0) and `MAP_V4_L2`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct V4Index {
    /// (index, value) of the non-zero level-1 entries.
    pub l1: Vec<(u32, u32)>,
    /// Level 2, `V4_L2_BLOCK` entries per block, up to the highest block used.
    pub l2: Vec<u32>,
}

impl V4Index {
    /// `ranges`: (range id, network) of every IPv4 range. A range inside
    /// another (`config::nesting`) takes its /24s from it, and a /24 that holds
    /// a range longer than /24 asks the trie, which finds the longest prefix.
    /// A /16 that `previous` already had keeps its block, so live updates never
    /// point a /16 at another's block; a new /16 takes a block neither layout uses.
    pub fn build(
        ranges: impl IntoIterator<Item = (u32, Ipv4Net)>,
        previous: Option<&V4Index>,
        block_capacity: u32,
    ) -> Result<V4Index, LayoutError> {
        // /24 number (address >> 8) -> slot value.
        let mut slots: BTreeMap<u32, u32> = BTreeMap::new();
        let mut ranges: Vec<(u32, Ipv4Net)> = ranges.into_iter().collect();
        // Shortest prefix first, so that what lies inside overwrites.
        ranges.sort_by_key(|(_, net)| net.prefix_len());
        for (id, net) in ranges {
            let first = u32::from(net.network()) >> 8;
            if net.prefix_len() > 24 {
                slots.insert(first, V4_SLOT_LPM);
            } else {
                let count = 1u32 << (24 - net.prefix_len());
                for slash24 in first..first + count {
                    slots.insert(slash24, id + 1);
                }
            }
        }
        let slash16s: BTreeSet<u32> = slots.keys().map(|s| s >> 8).collect();
        let old_block = |slash16: u32| {
            previous.and_then(|p| p.l1.iter().find(|(s, _)| *s == slash16).map(|(_, b)| b - 1))
        };
        let mut taken: BTreeSet<u32> =
            previous.map_or_else(BTreeSet::new, |p| p.l1.iter().map(|(_, b)| b - 1).collect());
        let mut l1 = Vec::new();
        for &slash16 in &slash16s {
            let block = match old_block(slash16) {
                Some(block) => block,
                None => {
                    let block = (0..block_capacity).find(|b| !taken.contains(b)).ok_or(
                        LayoutError::Blocks {
                            capacity: block_capacity,
                        },
                    )?;
                    taken.insert(block);
                    block
                }
            };
            l1.push((slash16, block + 1));
        }
        let blocks = l1.iter().map(|(_, b)| *b).max().unwrap_or(0);
        let mut l2 = vec![0u32; (blocks * V4_L2_BLOCK) as usize];
        for (slash24, value) in slots {
            let (_, block) = l1
                .iter()
                .find(|(s, _)| *s == slash24 >> 8)
                .expect("every /16 has a block");
            l2[((block - 1) * V4_L2_BLOCK + (slash24 & 0xff)) as usize] = value;
        }
        Ok(V4Index { l1, l2 })
    }

    /// The entries of `MAP_V4_SLASH24`, one per level-2 entry: its value, and
    /// for a /24 of a dense range that range's policy and the /24's first
    /// dense slot. `ranges`: every range value, by id.
    pub fn slash24s<'a>(&self, ranges: impl IntoIterator<Item = &'a RangeValue>) -> Vec<V4Slash24> {
        let by_id: HashMap<u32, &RangeValue> =
            ranges.into_iter().map(|r| (r.range_id, r)).collect();
        let mut entries = vec![V4Slash24::default(); self.l2.len()];
        for &(slash16, block) in &self.l1 {
            for octet in 0..V4_L2_BLOCK {
                let index = ((block - 1) * V4_L2_BLOCK + octet) as usize;
                let range_slot = self.l2[index];
                let range = match range_slot {
                    V4_SLOT_NONE | V4_SLOT_LPM => None,
                    id_plus_one => by_id.get(&(id_plus_one - 1)).copied(),
                };
                entries[index] = match range {
                    Some(range) if range.per_vip_mode == PER_VIP_DENSE => {
                        let first = (slash16 << 16) | (octet << 8);
                        V4Slash24 {
                            range_slot,
                            direct: V4_DIRECT_DENSE,
                            policy_id: range.policy_id,
                            dense_first: range
                                .dense_base
                                .wrapping_add(first.wrapping_sub(range.network_v4_host)),
                        }
                    }
                    _ => V4Slash24 {
                        range_slot,
                        ..V4Slash24::default()
                    },
                };
            }
        }
        entries
    }

    /// Blocks level 2 needs (the highest block in use).
    pub fn blocks(&self) -> u32 {
        self.l2.len() as u32 / V4_L2_BLOCK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_slash16s_keep_their_block_and_new_ones_take_unused_blocks() {
        let first = V4Index::build(
            [(0, net("192.0.2.0/24")), (1, net("198.51.100.0/24"))],
            None,
            8,
        )
        .unwrap();
        assert_eq!(first.l1, vec![(0xc000, 1), (0xc633, 2)]);
        // 192.0.2.0/24 goes, 203.0.113.0/24 comes: block 0 was in use before, so
        // the new /16 does not reuse it in the same update.
        let second = V4Index::build(
            [(1, net("198.51.100.0/24")), (2, net("203.0.113.0/24"))],
            Some(&first),
            8,
        )
        .unwrap();
        assert_eq!(second.l1, vec![(0xc633, 2), (0xcb00, 3)]);
        assert_eq!(second.l2[256 + 100], 2);
        assert_eq!(second.l2[2 * 256 + 113], 3);
        assert_eq!(
            V4Index::build([(2, net("203.0.113.0/24"))], Some(&first), 2),
            Err(LayoutError::Blocks { capacity: 2 })
        );
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    impl V4Index {
        /// What the datapath's lookup does: `Some(Some(id))` for a direct hit,
        /// `Some(None)` when the trie decides, `None` for no range.
        fn resolve(&self, addr: &str) -> Option<Option<u32>> {
            match self.l2[self.slot(addr)?] {
                0 => None,
                V4_SLOT_LPM => Some(None),
                id_plus_one => Some(Some(id_plus_one - 1)),
            }
        }

        /// The level-2 entry of `addr`'s /24, if its /16 has a block.
        fn slot(&self, addr: &str) -> Option<usize> {
            let host = u32::from(addr.parse::<std::net::Ipv4Addr>().unwrap());
            let (_, block) = self.l1.iter().find(|&&(index, _)| index == host >> 16)?;
            Some(((block - 1) * V4_L2_BLOCK + ((host >> 8) & 0xff)) as usize)
        }
    }

    #[test]
    fn slash24_ranges_resolve_directly_and_longer_ones_defer_to_the_trie() {
        let index = V4Index::build(
            [
                (0, net("192.0.2.0/24")),
                (1, net("198.51.100.16/28")),
                (2, net("198.51.100.64/28")),
                (3, net("203.0.113.0/24")),
                (4, net("198.18.0.0/24")),
            ],
            None,
            16,
        )
        .unwrap();
        assert_eq!(index.l1.len(), 4, "one block per /16 touched");
        assert_eq!(index.l2.len(), 4 * 256);
        assert_eq!(index.resolve("192.0.2.0"), Some(Some(0)));
        assert_eq!(index.resolve("192.0.2.255"), Some(Some(0)));
        assert_eq!(index.resolve("203.0.113.9"), Some(Some(3)));
        assert_eq!(index.resolve("198.51.100.20"), Some(None));
        assert_eq!(index.resolve("198.51.100.200"), Some(None));
        assert_eq!(index.resolve("198.18.0.1"), Some(Some(4)));
        assert_eq!(index.resolve("198.18.1.1"), None, "same /16, other /24");
        assert_eq!(index.resolve("198.19.0.1"), None, "untouched /16");
    }

    #[test]
    fn wide_ranges_fill_every_slash24_of_every_slash16() {
        let index = V4Index::build(
            [(7, net("198.18.0.0/15")), (8, net("192.0.2.0/24"))],
            None,
            16,
        )
        .unwrap();
        assert_eq!(index.l1, vec![(0xc000, 1), (0xc612, 2), (0xc613, 3)]);
        assert_eq!(index.l2[2], 9, "ids are stored plus one");
        assert_eq!(index.l2[..256].iter().filter(|&&v| v != 0).count(), 1);
        assert!(index.l2[256..].iter().all(|&v| v == 8));
        assert_eq!(index.resolve("198.19.255.255"), Some(Some(7)));
    }

    #[test]
    fn a_range_inside_another_takes_its_slash24s_in_any_order() {
        let ranges = [
            (0, net("192.0.2.53/32")),
            (1, net("198.18.0.0/15")),
            (2, net("198.18.5.0/24")),
            (3, net("198.18.0.0/16")),
            (4, net("192.0.2.0/24")),
        ];
        let mut reversed = ranges;
        reversed.reverse();
        for order in [ranges, reversed] {
            let index = V4Index::build(order, None, 16).unwrap();
            assert_eq!(index.resolve("198.18.5.1"), Some(Some(2)));
            assert_eq!(index.resolve("198.18.4.255"), Some(Some(3)));
            assert_eq!(index.resolve("198.18.6.0"), Some(Some(3)));
            assert_eq!(index.resolve("198.19.5.1"), Some(Some(1)));
            assert_eq!(index.resolve("192.0.2.53"), Some(None), "the trie decides");
            assert_eq!(index.resolve("192.0.2.54"), Some(None), "the /24 too");
        }
    }

    fn range(id: u32, mode: u32, net: &str, dense_base: u32, policy_id: u32) -> RangeValue {
        RangeValue {
            range_id: id,
            per_vip_mode: mode,
            dense_base,
            network_v4_host: u32::from(self::net(net).network()),
            epoch: id + 1,
            policy_id,
        }
    }

    #[test]
    fn dense_slash24s_carry_their_policy_and_first_slot() {
        let ranges = [
            range(0, PER_VIP_DENSE, "198.18.0.0/22", 100, 7),
            range(1, vip_common::PER_VIP_SPARSE, "198.19.0.0/16", 0, 3),
            range(2, PER_VIP_DENSE, "192.0.2.16/28", 5000, 1),
        ];
        let index = V4Index::build(
            [
                (0, net("198.18.0.0/22")),
                (1, net("198.19.0.0/16")),
                (2, net("192.0.2.16/28")),
            ],
            None,
            16,
        )
        .unwrap();
        let entries = index.slash24s(&ranges);
        assert_eq!(entries.len(), index.l2.len());
        let at = |addr: &str| entries[index.slot(addr).unwrap()];
        let dense = |first| V4Slash24 {
            range_slot: 1,
            direct: V4_DIRECT_DENSE,
            policy_id: 7,
            dense_first: first,
        };
        assert_eq!(at("198.18.0.9"), dense(100));
        assert_eq!(at("198.18.3.9"), dense(100 + 3 * 256));
        let read_the_range = |range_slot| V4Slash24 {
            range_slot,
            ..V4Slash24::default()
        };
        assert_eq!(at("198.19.113.1"), read_the_range(2), "sparse");
        assert_eq!(
            at("192.0.2.20"),
            read_the_range(V4_SLOT_LPM),
            "longer than /24"
        );
        assert_eq!(at("198.18.4.1"), V4Slash24::default(), "no range");
    }

    #[test]
    fn no_ipv4_ranges_give_an_empty_index() {
        let index = V4Index::build([], None, 16).unwrap();
        assert!(index.l1.is_empty());
        assert_eq!(index.blocks(), 0);
    }
}
