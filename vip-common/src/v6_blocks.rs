//! The IPv6 dense index (layout 13): IPv6 ranges of [`DENSE_MIN_PREFIX_V6`] or
//! longer have one dense slot per address, as IPv4 ranges of /16 or longer do.
//! Their /112 blocks are found in `MAP_V6_BLOCKS`, an open-addressing array
//! that userspace fills from the config: no packet can add to it, so a probe
//! is bounded by how userspace placed the blocks, not by traffic. Since
//! layout 16 it also holds an entry for each declared IPv6 VIP it has room
//! for ([`V6_BLOCK_DECLARED`]), and since layout 17 one for each sparse IPv6
//! range that is alone in its /64 ([`V6_BLOCK_RANGE`]).

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
/// `V6Block::state` (layout 17): a sparse IPv6 range of /64 or longer that
/// is the only range of /64 or longer in its /64, placed by
/// [`v6_range_hash`] of the /64, at most `V6_RANGE_PROBES - 1`
/// entries after it ([`V6Block::range`]). An address of the /64 inside the
/// range is the range's (no range lies inside it), so its packets need not
/// ask the trie. A fast path, never the authority, like a declared VIP's
/// entry: it counts only while the range has the entry's epoch, and a range
/// without one is found in the trie. A lookup by block goes on past it.
pub const V6_BLOCK_RANGE: u32 = 5;
/// Entries a range's lookup reads at most, from its /64's hash on.
pub const V6_RANGE_PROBES: u32 = 8;
/// `V6Block::range` flag: every declared VIP of the range (in the entry's
/// epoch) has its own entry, written before this one, so an address whose
/// declared lookup finds no entry at all is not declared.
pub const V6_RANGE_DECLARED_COMPLETE: u16 = 1;

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

    /// The entry of the sparse range `range_id` (network `network_be`, network
    /// order, of `prefix_len` 64 to 128) in its incarnation `epoch`, with
    /// `V6_RANGE_*` `flags`. The fields of a dense block hold these instead:
    /// the range id in `policy_id`, the epoch in `dense_base`, the prefix
    /// length in `first_offset_host`, the flags in `span_host`.
    pub fn range(
        network_be: [u8; 16],
        prefix_len: u8,
        range_id: u32,
        epoch: u32,
        flags: u16,
    ) -> V6Block {
        V6Block {
            prefix_be: network_be,
            state: V6_BLOCK_RANGE,
            policy_id: range_id,
            dense_base: epoch,
            first_offset_host: u16::from(prefix_len),
            span_host: flags,
        }
    }

    /// `V6_BLOCK_RANGE`: the range's id.
    #[inline(always)]
    pub fn range_id(&self) -> u32 {
        self.policy_id
    }

    /// `V6_BLOCK_RANGE`: the range's epoch when the entry was written.
    #[inline(always)]
    pub fn range_epoch(&self) -> u32 {
        self.dense_base
    }

    /// `V6_BLOCK_RANGE`: the `V6_RANGE_*` flags.
    #[inline(always)]
    pub fn range_flags(&self) -> u16 {
        self.span_host
    }

    /// `V6_BLOCK_RANGE`: whether an address, as two words loaded from
    /// memory, lies in the range (whose /64 it shares, the entry found by it).
    #[inline(always)]
    pub fn range_holds(&self, words: [u64; 2]) -> bool {
        let host_bits = 128u32.saturating_sub(u32::from(self.first_offset_host)) & 127;
        // Bits of the second word's value (big-endian) inside the prefix: none
        // for a /64. Shifted in two halves, each under 64, so that a shift of
        // 64 takes no branch (BPF has no conditional move).
        let half = host_bits / 2;
        let inside = (u64::MAX << (half & 63)) << ((host_bits - half) & 63);
        (words[1] ^ self.prefix_words()[1]) & inside.to_be() == 0
    }
}

/// Where the probe for a range entry of an address's /64 starts (before the
/// mask), from the address's first word: SplitMix64's finalizer, so that
/// /64s that differ in any one group spread over the whole table. (A single
/// multiply, as [`v6_block_hash`], leaves /64s that differ only in their last
/// group, the word's top bits as loaded, on a lattice.)
#[inline(always)]
pub fn v6_range_hash(first_word: u64) -> u32 {
    let mut z = first_word;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
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
    fn a_range_entry_gives_back_what_it_was_made_of() {
        let net = "2001:db8:0:5::".parse::<core::net::Ipv6Addr>().unwrap();
        let entry = V6Block::range(net.octets(), 64, 9, 0x0004_0001, V6_RANGE_DECLARED_COMPLETE);
        assert_eq!(entry.state, V6_BLOCK_RANGE);
        assert_eq!(
            (entry.range_id(), entry.range_epoch(), entry.range_flags()),
            (9, 0x0004_0001, V6_RANGE_DECLARED_COMPLETE)
        );
        assert_eq!(entry.prefix_words(), words("2001:db8:0:5::"));
    }

    #[test]
    fn a_range_entry_holds_exactly_the_addresses_of_its_prefix() {
        let cases: &[(&str, u8, &str, bool)] = &[
            (
                "2001:db8:0:5::",
                64,
                "2001:db8:0:5:ffff:ffff:ffff:ffff",
                true,
            ),
            ("2001:db8:0:5::", 64, "2001:db8:0:5::", true),
            ("2001:db8:0:5:8000::", 65, "2001:db8:0:5:ffff::1", true),
            ("2001:db8:0:5:8000::", 65, "2001:db8:0:5:7fff::1", false),
            ("2001:db8:0:5:1:2::", 96, "2001:db8:0:5:1:2:3:4", true),
            ("2001:db8:0:5:1:2::", 96, "2001:db8:0:5:1:3::", false),
            ("2001:db8:0:5::6", 127, "2001:db8:0:5::7", true),
            ("2001:db8:0:5::6", 127, "2001:db8:0:5::8", false),
            ("2001:db8:0:5::7", 128, "2001:db8:0:5::7", true),
            ("2001:db8:0:5::7", 128, "2001:db8:0:5::6", false),
        ];
        for &(net, len, addr, held) in cases {
            let net = net.parse::<core::net::Ipv6Addr>().unwrap();
            let entry = V6Block::range(net.octets(), len, 1, 1, 0);
            assert_eq!(
                entry.range_holds(words(addr)),
                held,
                "{net}/{len} holds {addr}"
            );
        }
    }

    #[test]
    fn neighbouring_64s_hash_apart() {
        // 1,024 /64s that differ in one 16-bit group, for each group of the
        // /64, into 4,096 entries: a random placement leaves about 900
        // entries used.
        for group in 0..4 {
            let mut seen = std::collections::BTreeSet::new();
            for i in 0..1024u128 {
                let base = 0x2001_0db8u128 << 96;
                let addr = core::net::Ipv6Addr::from(base ^ (i << (16 * (7 - group))));
                let first: [u64; 2] = bytemuck::cast(addr.octets());
                seen.insert(v6_range_hash(first[0]) & 4095);
            }
            assert!(seen.len() > 850, "group {group}: {}", seen.len());
        }
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
