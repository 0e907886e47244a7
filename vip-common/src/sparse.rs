//! The sparse per-VIP table's hash, its aging, and what it reports.
//!
//! Slots age without a clock read per packet: the daemon bumps
//! `SparseControl::generation` every half `sparse_idle_seconds`, and a hit
//! stamps its slot with it. A slot `SPARSE_IDLE_GENERATIONS` behind has seen no
//! packet for at least `sparse_idle_seconds`, and the next new VIP that probes
//! it takes it over, moving its counts into the range's `RangePressure` first.

use bytemuck::{Pod, Zeroable};

use crate::{Verdicts, VipAddr};

/// Generations a slot's stamp must lag for the slot to be reclaimed. With a
/// generation every half idle time, a slot so far behind has been idle for at
/// least the idle time, and every idle slot gets there within the idle time
/// plus one generation.
pub const SPARSE_IDLE_GENERATIONS: u32 = 3;

/// Whether a slot stamped `seen` may be reclaimed in `generation`.
#[inline(always)]
pub fn sparse_idle(generation: u32, seen: u32) -> bool {
    generation.wrapping_sub(seen) >= SPARSE_IDLE_GENERATIONS
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
    pub _pad: u32,
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
    /// Its slot in `MAP_DENSE_STATS`, per CPU.
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

    const SLOTS: usize = 8192;

    fn slot(addr: [u8; 16], key: u64) -> usize {
        sparse_hash(&VipAddr::from_v6_be(addr), key) as usize & (SLOTS - 1)
    }

    /// Addresses that differ in any one byte of the host part spread over the
    /// table: no slot gets more than a handful of them.
    #[test]
    fn sparse_hash_spreads_addresses_that_differ_in_one_byte() {
        for key in [0, 0x9e37_79b9_7f4a_7c15] {
            for byte in 8..16 {
                let mut load = [0u8; SLOTS];
                for value in 0..=255u8 {
                    let mut addr = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
                    addr[byte] = value;
                    load[slot(addr, key)] += 1;
                }
                let worst = load.iter().max().unwrap();
                assert!(
                    *worst <= 3,
                    "key {key:#x}, byte {byte}: {worst} addresses in one slot"
                );
            }
        }
    }

    /// Addresses that share a start under one key are spread under another.
    #[test]
    fn another_key_breaks_up_a_colliding_set() {
        let colliding: Vec<[u8; 16]> = (0..u16::MAX)
            .map(|i| {
                let mut addr = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                addr[14..].copy_from_slice(&i.to_be_bytes());
                addr
            })
            .filter(|addr| slot(*addr, 0) == 0)
            .collect();
        assert!(
            colliding.len() >= 4,
            "{} addresses start at slot 0",
            colliding.len()
        );
        let starts: BTreeSet<usize> = colliding
            .iter()
            .map(|addr| slot(*addr, 0x1234_5678_9abc_def0))
            .collect();
        assert_eq!(
            starts.len(),
            colliding.len(),
            "one start each under the other key"
        );
    }

    #[test]
    fn slots_go_idle_after_three_generations_through_wraparound() {
        assert!(!sparse_idle(5, 5));
        assert!(!sparse_idle(7, 5));
        assert!(sparse_idle(8, 5));
        assert!(!sparse_idle(1, u32::MAX));
        assert!(sparse_idle(2, u32::MAX));
        assert!(
            !sparse_idle(0, 0),
            "a fresh datapath reclaims nothing at once"
        );
    }
}
