//! The IPv4 direct index that fronts the LPM trie (see vip-ebpf's lookup.rs):
//! level 1 maps each /16 to a block of level 2, which maps each /24 to the one
//! range covering it, or to "ask the trie" when ranges longer than /24 lie in it.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::Ipv4Net;
use vip_common::{V4_L2_BLOCK, V4_SLOT_LPM};

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
    /// `ranges`: (range id, network) of every IPv4 range; they do not overlap.
    /// A /16 that `previous` already had keeps its block, so live updates never
    /// point a /16 at another's block; a new /16 takes a block neither layout uses.
    pub fn build(
        ranges: impl IntoIterator<Item = (u32, Ipv4Net)>,
        previous: Option<&V4Index>,
        block_capacity: u32,
    ) -> Result<V4Index, LayoutError> {
        // /24 number (address >> 8) -> slot value.
        let mut slots: BTreeMap<u32, u32> = BTreeMap::new();
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
            let host = u32::from(addr.parse::<std::net::Ipv4Addr>().unwrap());
            let (_, block) = self.l1.iter().find(|&&(index, _)| index == host >> 16)?;
            let value = self.l2[((block - 1) * V4_L2_BLOCK + ((host >> 8) & 0xff)) as usize];
            match value {
                0 => None,
                V4_SLOT_LPM => Some(None),
                id_plus_one => Some(Some(id_plus_one - 1)),
            }
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
    fn no_ipv4_ranges_give_an_empty_index() {
        let index = V4Index::build([], None, 16).unwrap();
        assert!(index.l1.is_empty());
        assert_eq!(index.blocks(), 0);
    }
}
