//! The IPv6 dense index (layout 13): IPv6 ranges of [`DENSE_MIN_PREFIX_V6`] or
//! longer have one dense slot per address, as IPv4 ranges of /16 or longer do.
//! Their /112 blocks are found in `MAP_V6_BLOCKS`, an open-addressing array
//! that userspace fills from the config: no packet can add to it, so a probe
//! is bounded by how userspace placed the blocks, not by traffic. Since
//! layout 16 it also holds an entry for each declared IPv6 VIP it has room
//! for ([`V6_BLOCK_DECLARED`]).

use bytemuck::{Pod, Zeroable};

/// IPv6 ranges of this prefix length or longer get a dense per-VIP index
/// (unless they declare VIPs or do not learn: those stay sparse).
pub const DENSE_MIN_PREFIX_V6: u8 = 112;

/// Array of [`V6Block`], a power of two long (`GLOBAL_V6_BLOCK_MASK` + 1): the
/// /112 blocks that hold dense IPv6 ranges, each at most `V6_BLOCK_PROBES - 1`
/// entries after [`v6_block_hash`] of its prefix, and declared IPv6 VIPs.
pub const MAP_V6_BLOCKS: &str = "VIP_V6_BLOCKS";
/// Global the loader sets to `MAP_V6_BLOCKS`'s length minus one.
pub const GLOBAL_V6_BLOCK_MASK: &str = "VIP_V6_BLOCK_MASK";
/// Entries a lookup reads at most, from the block's hash on.
pub const V6_BLOCK_PROBES: u32 = 4;
/// The longest `MAP_V6_BLOCKS`.
pub const V6_BLOCKS_MAX: u32 = 1 << 24;

/// `V6Block::state`: never used; a lookup stops here.
pub const V6_BLOCK_EMPTY: u32 = 0;
/// `V6Block::state`: one dense range lies in the block; the entry has all a
/// packet needs.
pub const V6_BLOCK_DIRECT: u32 = 1;
/// `V6Block::state`: several dense ranges lie in the block: ask the IPv6 trie.
pub const V6_BLOCK_LPM: u32 = 2;
/// `V6Block::state`: the block's ranges were removed; a lookup goes on past it.
pub const V6_BLOCK_REMOVED: u32 = 3;
/// `V6Block::state` (layout 16): one declared VIP of a sparse range, placed
/// by [`v6_block_hash`] of its whole address, at most `V6_DECLARED_PROBES - 1`
/// entries after it ([`V6Block::declared`]). A lookup by block goes on past
/// it. A fast path, never the authority: a packet counts through it only
/// while the VIP's range still has the entry's epoch, and a declared VIP
/// without an entry is found as before (the trie, then `MAP_DECLARED`).
pub const V6_BLOCK_DECLARED: u32 = 4;
/// Entries a declared VIP's lookup reads at most, from its address's hash on.
pub const V6_DECLARED_PROBES: u32 = 8;

/// Value of `MAP_V6_BLOCKS`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct V6Block {
    /// The block's first address (its last two bytes 0), in network order.
    pub prefix_be: [u8; 16],
    /// One of the `V6_BLOCK_*` states. Written last: an entry is written
    /// with its old state first, then again with the new one.
    pub state: u32,
    /// `V6_BLOCK_DIRECT`: the range's `policy_id`.
    pub policy_id: u32,
    /// `V6_BLOCK_DIRECT`: the slot in `MAP_DENSE_COUNTS` of the range's first
    /// address.
    pub dense_base: u32,
    /// `V6_BLOCK_DIRECT`: the range's first address's last two bytes, and its
    /// length minus one, in host order.
    pub first_offset_host: u16,
    pub span_host: u16,
}

const _: () = assert!(size_of::<V6Block>() == 32);

impl V6Block {
    /// The prefix as the datapath compares it: the address's two 8-byte words
    /// as loaded from memory, the second with its last two bytes cleared.
    /// For a `V6_BLOCK_DECLARED` entry, the VIP's whole address.
    #[inline(always)]
    pub fn prefix_words(&self) -> [u64; 2] {
        bytemuck::cast(self.prefix_be)
    }

    /// The entry of a declared VIP (`vip_be`, network order) of the range
    /// `range_id` in its incarnation `epoch`, counted in dense slot
    /// `dense_slot`. The fields of a dense block hold these instead: the
    /// range id in `policy_id`, the slot in `dense_base`, the epoch's low and
    /// high halves in `first_offset_host` and `span_host`.
    pub fn declared(vip_be: [u8; 16], range_id: u32, epoch: u32, dense_slot: u32) -> V6Block {
        V6Block {
            prefix_be: vip_be,
            state: V6_BLOCK_DECLARED,
            policy_id: range_id,
            dense_base: dense_slot,
            first_offset_host: epoch as u16,
            span_host: (epoch >> 16) as u16,
        }
    }

    /// `V6_BLOCK_DECLARED`: the id of the VIP's range.
    #[inline(always)]
    pub fn declared_range_id(&self) -> u32 {
        self.policy_id
    }

    /// `V6_BLOCK_DECLARED`: the epoch the VIP's range had when the entry was
    /// written.
    #[inline(always)]
    pub fn declared_epoch(&self) -> u32 {
        u32::from(self.first_offset_host) | u32::from(self.span_host) << 16
    }

    /// `V6_BLOCK_DECLARED`: the VIP's slot in `MAP_DENSE_COUNTS`.
    #[inline(always)]
    pub fn declared_slot(&self) -> u32 {
        self.dense_base
    }
}

/// The block words of an address given as two words loaded from memory (the
/// last two bytes of the second cleared), and its offset in the block (its
/// last two bytes, host order).
#[inline(always)]
pub fn v6_block_of(words: [u64; 2]) -> ([u64; 2], u16) {
    let tail = words[1].to_ne_bytes();
    (
        [words[0], words[1] & u64::from_ne_bytes(BLOCK_TAIL_MASK)],
        u16::from_be_bytes([tail[6], tail[7]]),
    )
}

/// The bytes of an address's second word that are its block's.
const BLOCK_TAIL_MASK: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0];

/// Where a block's probe starts (before the mask): one multiply of the two
/// words folded, its bytes reversed, so that the entry index comes from the
/// product's top bytes, which every input bit reaches. Not keyed: the table
/// holds configured blocks only, and a lookup reads at most
/// `V6_BLOCK_PROBES` entries whatever the address.
#[inline(always)]
pub fn v6_block_hash(prefix_words: [u64; 2]) -> u32 {
    (prefix_words[0] ^ prefix_words[1].rotate_left(32))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .swap_bytes() as u32
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for V6Block {}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(addr: &str) -> [u64; 2] {
        let addr: core::net::Ipv6Addr = addr.parse().unwrap();
        bytemuck::cast(addr.octets())
    }

    #[test]
    fn an_address_parts_into_its_block_and_offset() {
        let (prefix, offset) = v6_block_of(words("2001:db8:0:1::12:abcd"));
        assert_eq!(prefix, words("2001:db8:0:1::12:0"));
        assert_eq!(offset, 0xabcd);
        let block = V6Block {
            prefix_be: "2001:db8:0:1::12:0"
                .parse::<core::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            ..V6Block::default()
        };
        assert_eq!(block.prefix_words(), prefix);
    }

    #[test]
    fn a_declared_entry_gives_back_what_it_was_made_of() {
        let vip = "2001:db8::10".parse::<core::net::Ipv6Addr>().unwrap();
        let entry = V6Block::declared(vip.octets(), 7, 0x0003_0002, 1_000);
        assert_eq!(entry.state, V6_BLOCK_DECLARED);
        assert_eq!(entry.prefix_words(), words("2001:db8::10"));
        assert_eq!(
            (
                entry.declared_range_id(),
                entry.declared_epoch(),
                entry.declared_slot()
            ),
            (7, 0x0003_0002, 1_000)
        );
    }

    #[test]
    fn neighbouring_blocks_hash_apart() {
        // 1,024 blocks that differ in one 16-bit group of the address, for each
        // group of a /112's prefix, into 4,096 entries: a random placement
        // leaves about 900 entries used; a hash that ignored the group's bits
        // would use a few.
        for group in 0..7 {
            let mut seen = std::collections::BTreeSet::new();
            for i in 0..1024u128 {
                let base = 0x2001_0db8u128 << 96;
                let addr = core::net::Ipv6Addr::from(base ^ (i << (16 * (7 - group))));
                let prefix = v6_block_of(bytemuck::cast(addr.octets())).0;
                seen.insert(v6_block_hash(prefix) & 4095);
            }
            assert!(seen.len() > 850, "group {group}: {}", seen.len());
        }
    }
}
