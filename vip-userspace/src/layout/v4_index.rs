//! The IPv4 direct index that fronts the LPM trie (see vip-ebpf's lookup.rs):
//! level 1 maps each /16 to a block of level 2, which maps each /24 to the one
//! range covering it, or to "ask the trie" when ranges longer than /24 lie in it.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use vip_common::{V4_L2_BLOCK, V4_SLOT_LPM};

/// Contents of `MAP_V4_L1` (dense, 65,536 entries) and `MAP_V4_L2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V4Index {
    /// (index, value) of the non-zero level-1 entries.
    pub l1: Vec<(u32, u32)>,
    /// Level 2, `V4_L2_BLOCK` entries per block; empty when no IPv4 range exists.
    pub l2: Vec<u32>,
}

impl V4Index {
    /// `ranges`: (range id, network) of every IPv4 range; they do not overlap.
    pub fn build(ranges: impl IntoIterator<Item = (u32, Ipv4Net)>) -> V4Index {
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
        let mut l1 = Vec::new();
        let mut l2 = Vec::new();
        for (slash24, value) in slots {
            let slash16 = slash24 >> 8;
            if l1.last().is_none_or(|&(index, _)| index != slash16) {
                l1.push((slash16, (l2.len() as u32 / V4_L2_BLOCK) + 1));
                l2.resize(l2.len() + V4_L2_BLOCK as usize, 0);
            }
            let block_start = l2.len() - V4_L2_BLOCK as usize;
            l2[block_start + (slash24 & 0xff) as usize] = value;
        }
        V4Index { l1, l2 }
    }

    /// Blocks in level 2 (the map needs at least one entry).
    pub fn l2_len(&self) -> u32 {
        (self.l2.len() as u32).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let index = V4Index::build([
            (0, net("192.0.2.0/24")),
            (1, net("198.51.100.16/28")),
            (2, net("198.51.100.64/28")),
            (3, net("203.0.113.0/24")),
            (4, net("198.18.0.0/24")),
        ]);
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
        let index = V4Index::build([(7, net("198.18.0.0/15")), (8, net("192.0.2.0/24"))]);
        assert_eq!(index.l1, vec![(0xc000, 1), (0xc612, 2), (0xc613, 3)]);
        assert_eq!(index.l2[2], 9, "ids are stored plus one");
        assert_eq!(index.l2[..256].iter().filter(|&&v| v != 0).count(), 1);
        assert!(index.l2[256..].iter().all(|&v| v == 8));
        assert_eq!(index.resolve("198.19.255.255"), Some(Some(7)));
    }

    #[test]
    fn no_ipv4_ranges_give_an_empty_index() {
        let index = V4Index::build([]);
        assert!(index.l1.is_empty());
        assert_eq!(index.l2_len(), 1);
    }
}
