//! The sparse per-VIP table's hash, its aging, and what it reports.
//!
//! Slots age without a clock read per packet: the daemon moves the tag word's
//! sweep count on every half `sparse_idle_seconds` (and
//! `SparseControl::generation` with it, which `vip stats` shows and programs
//! of layout 11 and older stamped), and a hit stamps its slot with the word. A
//! slot `SPARSE_IDLE_GENERATIONS` sweeps behind has seen no packet for at
//! least `sparse_idle_seconds`, and the next new VIP that probes it takes it
//! over, moving its counts into the range's `RangePressure` first.

use bytemuck::{Pod, Zeroable};

use crate::{Verdicts, VipAddr};

/// Generations a slot's stamp must lag for the slot to be reclaimed. With a
/// generation every half idle time, a slot so far behind has been idle for at
/// least the idle time, and every idle slot gets there within the idle time
/// plus one generation.
pub const SPARSE_IDLE_GENERATIONS: u32 = 3;

/// The tag word (`MAP_SPARSE_TAG`, layout 12 on) moves on by this at every
/// sweep (rounded up to a multiple of it) and by [`SPARSE_TAG_RELOAD`] at every
/// change of the ranges: its bits from 9 up count sweeps, bits 1 to 8 the
/// reloads since the last sweep, and bit 0 is free for `SPARSE_TAG_VOUCHES`.
/// One word stamps a slot for both uses: aging compares only the sweep part,
/// so reloads do not age busy slots (but 256 reloads within one sweep carry
/// into it), and a slot vouches only under the very word it was stamped with.
pub const SPARSE_TAG_SWEEP: u32 = 512;
pub const SPARSE_TAG_RELOAD: u32 = 2;
/// Where the tag word goes instead of 0. (A new map's 0 moves to
/// [`SPARSE_TAG_RELOAD`] when the daemon first writes the ranges.)
pub const SPARSE_TAG_FIRST: u32 = SPARSE_TAG_SWEEP;

/// The tag word after a sweep. Never 0, which marks a free slot.
pub fn sparse_tag_swept(word: u32) -> u32 {
    nonzero_tag((word | (SPARSE_TAG_SWEEP - 1)).wrapping_add(1))
}

/// The tag word after a change of the ranges.
pub fn sparse_tag_reloaded(word: u32) -> u32 {
    nonzero_tag(word.wrapping_add(SPARSE_TAG_RELOAD))
}

fn nonzero_tag(word: u32) -> u32 {
    if word == 0 {
        SPARSE_TAG_FIRST
    } else {
        word
    }
}

/// Whether a slot stamped `stamp` may be reclaimed under the tag word `word`:
/// its sweep part (23 bits, which wrap after 2^23 sweeps, 97 days at the
/// shortest idle time) is [`SPARSE_IDLE_GENERATIONS`] or more behind.
#[inline(always)]
pub fn sparse_tag_idle(word: u32, stamp: u32) -> bool {
    (word / SPARSE_TAG_SWEEP).wrapping_sub(stamp / SPARSE_TAG_SWEEP) & (u32::MAX / SPARSE_TAG_SWEEP)
        >= SPARSE_IDLE_GENERATIONS
}

/// The one entry of `MAP_SPARSE_CONTROL`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SparseControl {
    /// Drawn at random when the datapath is created and kept for its life, so
    /// nobody can compute which addresses share probe sequences. 0 (unkeyed)
    /// on a datapath upgraded from layout 6 or older, whose slots stay where
    /// they are.
    pub hash_key: u64,
    /// Bumped by the daemon every half `sparse_idle_seconds`.
    pub generation: u32,
    /// Which hash places the VIPs: `SPARSE_HASH_*`, fixed when the datapath
    /// is created. The programs get it, and the multipliers, as loader
    /// constants; they read this entry for the fmix key and the generation.
    pub hash_kind: u32,
}

/// `SparseControl::hash_kind`: [`sparse_hash`] under `hash_key`. Datapaths
/// created by layout 9 and older (the field was padding, always 0), which an
/// upgrade leaves where they are.
pub const SPARSE_HASH_FMIX: u32 = 0;
/// `SparseControl::hash_kind`: [`sparse_hash_multiply`] with the multipliers
/// [`sparse_multipliers`] draws from `hash_key`. Datapaths created since
/// layout 10.
pub const SPARSE_HASH_MULTIPLY: u32 = 1;

impl SparseControl {
    /// Where a probe for `vip` starts (before the mask), as the datapath
    /// computes it. For userspace, which has no loader constants: it draws the
    /// multipliers again on every call.
    pub fn slot_hash(&self, vip: &VipAddr) -> u32 {
        match self.hash_kind {
            SPARSE_HASH_MULTIPLY => sparse_hash_multiply(vip, &sparse_multipliers(self.hash_key)),
            _ => sparse_hash(vip, self.hash_key),
        }
    }
}

/// Per range and per CPU (`MAP_PRESSURE`): what happened in the sparse table
/// beyond the VIP slots. Part of the range's totals: `reclaimed` and
/// `unlearned` count packets that are in no VIP row.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RangePressure {
    /// Counts moved out of the slots of VIPs that went idle and were reclaimed.
    pub reclaimed: Verdicts,
    /// Packets to addresses the range does not learn (`learn = false`).
    pub unlearned: Verdicts,
    /// Slots this range's VIPs took (free, left by a removed range, or idle).
    pub slots_learned: u64,
    /// Slots of this range's idle VIPs taken over by another VIP.
    pub slots_reclaimed: u64,
}

impl RangePressure {
    pub fn merge(&mut self, other: &RangePressure) {
        self.reclaimed.merge(&other.reclaimed);
        self.unlearned.merge(&other.unlearned);
        self.slots_learned += other.slots_learned;
        self.slots_reclaimed += other.slots_reclaimed;
    }
}

/// Value of `MAP_DECLARED`: where a declared VIP counts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DeclaredVip {
    /// Its slot in `MAP_DENSE_COUNTS`, per CPU.
    pub dense_index: u32,
    /// The epoch of the range that declares it: an entry left by a replaced
    /// range does not match.
    pub epoch: u32,
}

/// The sparse table's hash of an address under `key`: MurmurHash3's 64-bit
/// finalizer over both words, so that the low bits the table uses depend on
/// every bit of the address and of the key. Not a cryptographic PRF: it keeps
/// anyone without the key from computing a set of colliding addresses in
/// advance, at about the cost of the unkeyed hash. Key 0 is the unkeyed hash
/// of layouts 6 and older. The datapath and userspace share it.
#[inline(always)]
pub fn sparse_hash(vip: &VipAddr, key: u64) -> u32 {
    let words: [u64; 2] = bytemuck::cast(vip.addr_be);
    fmix64(words[0] ^ fmix64(words[1] ^ key)) as u32
}

/// The sparse table's hash of an address since layout 10: multiply-shift over
/// its four 32-bit words, with a random 64-bit multiplier each
/// ([`sparse_multipliers`]), then one xorshift-multiply-xorshift round.
///
/// `sum a_i * x_i` over 32-bit words is universal (Dietzfelbinger): two given
/// addresses get the same 64-bit sum with probability at most 2^-32 over the
/// multipliers, so nobody without them can choose a colliding set. The sum
/// alone is no table index: for some multipliers consecutive addresses land a
/// small fixed stride apart, and linear probing turns those into long runs.
/// The round, a bijection, spreads them like a random hash: over the 64 keys
/// of the test below, 951 VIPs end up past the probe limit with the sum's
/// high half as the index, 201 with that half folded onto the low one, and 7
/// with the round.
/// The four multiplies are independent, so by instruction latencies this is
/// about 15 cycles deep where [`sparse_hash`]'s two dependent finalizers are
/// about 26: that hash had a third of an IPv6 hit's samples in issue 19's
/// profile (AMD EPYC; BENCHMARKS.md "Issue 19, third session").
#[inline(always)]
pub fn sparse_hash_multiply(vip: &VipAddr, multipliers: &[u64; 4]) -> u32 {
    let words: [u32; 4] = bytemuck::cast(vip.addr_be);
    let sum = multipliers[0]
        .wrapping_mul(u64::from(words[0]))
        .wrapping_add(multipliers[1].wrapping_mul(u64::from(words[1])))
        .wrapping_add(multipliers[2].wrapping_mul(u64::from(words[2])))
        .wrapping_add(multipliers[3].wrapping_mul(u64::from(words[3])));
    let mixed = (sum ^ (sum >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (mixed ^ (mixed >> 32)) as u32
}

/// The multipliers of [`sparse_hash_multiply`] for a datapath's `hash_key`:
/// SplitMix64's outputs seeded with it.
pub fn sparse_multipliers(key: u64) -> [u64; 4] {
    let mut state = key;
    core::array::from_fn(|_| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

#[inline(always)]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

const _: () = assert!(size_of::<SparseControl>() == 16);
const _: () = assert!(size_of::<RangePressure>() == 80);
const _: () = assert!(size_of::<DeclaredVip>() == 8);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::SparseControl {}
    unsafe impl aya::Pod for super::RangePressure {}
    unsafe impl aya::Pod for super::DeclaredVip {}
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, vec::Vec};

    use super::*;
    use crate::SPARSE_PROBES;

    const SLOTS: usize = 8192;

    const KINDS: [u32; 2] = [SPARSE_HASH_FMIX, SPARSE_HASH_MULTIPLY];

    fn slot(addr: [u8; 16], hash_kind: u32, hash_key: u64) -> usize {
        let control = SparseControl {
            hash_key,
            hash_kind,
            ..SparseControl::default()
        };
        control.slot_hash(&VipAddr::from_v6_be(addr)) as usize & (SLOTS - 1)
    }

    /// Addresses that differ in any one byte of the host part spread over the
    /// table: no slot gets more than a handful of them.
    #[test]
    fn sparse_hash_spreads_addresses_that_differ_in_one_byte() {
        for kind in KINDS {
            for key in [0, 0x9e37_79b9_7f4a_7c15, 0x0123_4567_89ab_cdef] {
                for byte in 8..16 {
                    let mut load = [0u8; SLOTS];
                    for value in 0..=255u8 {
                        let mut addr = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
                        addr[byte] = value;
                        load[slot(addr, kind, key)] += 1;
                    }
                    let worst = load.iter().max().unwrap();
                    assert!(
                        *worst <= 3,
                        "kind {kind}, key {key:#x}, byte {byte}: {worst} addresses in one slot"
                    );
                }
            }
        }
    }

    /// Two blocks of 1,024 consecutive addresses with the same host parts
    /// (the usual shape of VIP blocks), a quarter of the table, under a linear
    /// probe: for 64 keys drawn as a datapath draws them, fewer VIPs than keys
    /// end up more than `SPARSE_PROBES` from their start. This hash puts 7
    /// there, uniform random starts put a few (3 in one simulation), and
    /// multiply-shift without its round puts hundreds there.
    #[test]
    fn consecutive_blocks_probe_like_a_random_hash_under_the_multiply_hash() {
        let mut beyond = 0;
        for seed in 0..64u64 {
            let key = sparse_multipliers(seed)[0];
            let mut taken = [false; SLOTS];
            for block in [1u8, 2] {
                for host in 0..1024u16 {
                    let mut addr = [
                        0x20, 0x01, 0x0d, 0xb8, 0, block, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ];
                    addr[14..].copy_from_slice(&host.to_be_bytes());
                    let start = slot(addr, SPARSE_HASH_MULTIPLY, key);
                    let probes = (0..SLOTS)
                        .find(|i| !taken[(start + i) & (SLOTS - 1)])
                        .unwrap();
                    taken[(start + probes) & (SLOTS - 1)] = true;
                    if probes >= SPARSE_PROBES as usize {
                        beyond += 1;
                    }
                }
            }
        }
        assert!(beyond < 64, "{beyond} VIPs beyond the probe limit");
    }

    /// The multiply hash of one address, worked by hand: multipliers that
    /// make the sum 9, then the round.
    #[test]
    fn the_multiply_hash_of_one_address() {
        let multipliers = [0, 0, 0, 1];
        let mut addr = [0u8; 16];
        addr[12..].copy_from_slice(&9u32.to_ne_bytes());
        // 9 * 0xbf58476d1ce4e5b9 = 0xba1a_82d6_040c_1381 (mod 2^64); its
        // halves xored.
        assert_eq!(
            sparse_hash_multiply(&VipAddr::from_v6_be(addr), &multipliers),
            0xbe16_9157
        );
    }

    #[test]
    fn another_key_breaks_up_a_colliding_set() {
        for kind in KINDS {
            let colliding: Vec<[u8; 16]> = (0..u16::MAX)
                .map(|i| {
                    let mut addr = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                    addr[14..].copy_from_slice(&i.to_be_bytes());
                    addr
                })
                .filter(|addr| slot(*addr, kind, 0) == 0)
                .collect();
            assert!(
                colliding.len() >= 4,
                "kind {kind}: {} addresses start at slot 0",
                colliding.len()
            );
            let starts: BTreeSet<usize> = colliding
                .iter()
                .map(|addr| slot(*addr, kind, 0x1234_5678_9abc_def0))
                .collect();
            assert_eq!(
                starts.len(),
                colliding.len(),
                "kind {kind}: one start each under the other key"
            );
        }
    }

    #[test]
    fn the_tag_word_ages_slots_by_sweeps_only() {
        let first = SPARSE_TAG_FIRST;
        let reloaded = (0..255).fold(first, |word, _| sparse_tag_reloaded(word));
        assert_eq!(reloaded, first + 510);
        assert!(
            !sparse_tag_idle(reloaded, first),
            "reloads do not age a slot"
        );
        let mut word = first;
        for sweeps in 1..=3 {
            word = sparse_tag_swept(word);
            assert_eq!(word, first + sweeps * SPARSE_TAG_SWEEP);
            assert_eq!(sparse_tag_idle(word, first | 1), sweeps == 3);
        }
        assert_eq!(sparse_tag_swept(first + 6), first + SPARSE_TAG_SWEEP);
        assert_eq!(sparse_tag_swept(u32::MAX - 1), SPARSE_TAG_FIRST, "never 0");
        assert_eq!(sparse_tag_reloaded(u32::MAX - 1), SPARSE_TAG_FIRST);
        // Through the wrap of the sweep part.
        let last = u32::MAX - (SPARSE_TAG_SWEEP - 1);
        assert!(!sparse_tag_idle(SPARSE_TAG_SWEEP, last));
        assert!(sparse_tag_idle(2 * SPARSE_TAG_SWEEP, last));
        assert!(!sparse_tag_idle(first, first), "a fresh slot is not idle");
    }
}
