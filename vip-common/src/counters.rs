//! Counter layout shared by the datapath and `vip stats`.
//!
//! Every frame lands in exactly one counter: a VIP slot's accepted or dropped side
//! (dense or sparse), a sparse range's overflow, or one of the global counters
//! below (but `GLOBAL_FRAGMENTS` and the `GLOBAL_DECAP_*` counters, which count
//! subsets of accepted packets). There
//! is no separate "all packets" counter on the fast path: userspace sums the parts.

use bytemuck::{Pod, Zeroable};

/// Index into `MAP_GLOBAL_STATS`: well-formed frames whose destination is in no
/// range, non-IP frames included.
pub const GLOBAL_NON_VIP: u32 = 0;
/// Frames with a truncated header, a bad IP version or IHL, or (for a range with an
/// allow list) a transport header that cannot be read. Passed, except to a range
/// with an allow list, where they are dropped.
pub const GLOBAL_MALFORMED: u32 = 1;
/// A map lookup that cannot fail did (e.g. a dense slot out of bounds): a bug or a
/// half-written config. The packet passes.
pub const GLOBAL_INTERNAL_ERRORS: u32 = 2;
/// Non-first fragments let through to a range with an allow list (they are also
/// counted as accepted for their VIP).
pub const GLOBAL_FRAGMENTS: u32 = 3;
/// Tunnelled packets decapsulated and passed on as their inner packet (also
/// counted as accepted for their inner VIP): IP in IPv4, IP in IPv6, GUE.
pub const GLOBAL_DECAP_IPIP: u32 = 4;
pub const GLOBAL_DECAP_IP6IP6: u32 = 5;
pub const GLOBAL_DECAP_GUE: u32 = 6;
pub const GLOBAL_COUNTERS: u32 = 7;

/// Packets and bytes; bytes are the frame length the program sees.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl Counter {
    #[inline(always)]
    pub fn add(&mut self, bytes: u64) {
        self.packets += 1;
        self.bytes += bytes;
    }

    #[inline(always)]
    pub fn merge(&mut self, other: &Counter) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

/// What happened to the packets of one VIP (or of a range's overflow).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Verdicts {
    pub accepted: Counter,
    pub dropped: Counter,
}

impl Verdicts {
    /// The side a verdict counts on.
    #[inline(always)]
    pub fn side(&mut self, drop: bool) -> &mut Counter {
        if drop {
            &mut self.dropped
        } else {
            &mut self.accepted
        }
    }

    #[inline(always)]
    pub fn merge(&mut self, other: &Verdicts) {
        self.accepted.merge(&other.accepted);
        self.dropped.merge(&other.dropped);
    }
}

/// One slot of `MAP_SPARSE_STATS` on one CPU: a VIP, its range, its counters;
/// one cache line. The sparse table of layouts 11 and older: layout 12's
/// programs count in [`SparseHot`] and [`SparseCold`], and a datapath upgraded
/// from 11 or older keeps this table, frozen, for the counts it holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SparseSlot {
    pub vip: crate::VipAddr,
    pub verdicts: Verdicts,
    pub range_id: u32,
    /// The range's epoch when the slot was taken; 0 for a free slot.
    pub epoch: u32,
    /// `SparseControl::generation` at the VIP's latest packet on this CPU (0
    /// in a slot written by a layout 6 datapath).
    pub seen_generation: u32,
    /// The ranges' version (`crate::MAP_RANGES_VERSION`) under which this
    /// VIP was last counted here for a live range in `PER_VIP_SPARSE` mode
    /// without an allow list. While that version is in force (and not 0), a
    /// packet to the VIP is accepted and counted without reading its range.
    /// 0: not known (the padding of layouts 10 and older).
    pub fast_version: u32,
}

/// One slot of `MAP_SPARSE_HOT` on one CPU (layout 12 on): what a hit on a
/// sparse VIP touches, half a cache line. Its counters are the low parts of
/// the VIP's counts; [`SparseCold`] at the same index holds the rest, and a
/// VIP's count is the sum of the two. A free slot is all zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SparseHot {
    pub vip: crate::VipAddr,
    /// The tag word (`crate::MAP_SPARSE_TAG`) when the VIP was last counted
    /// here, with [`SPARSE_TAG_VOUCHES`] if that count vouches for the slot;
    /// 0 for a free slot (the word is never 0).
    pub tag: u32,
    /// The allow list of the VIP's range, as [`SparseHot::policy_of`] narrows
    /// it; read only while the slot vouches.
    pub policy_id: u16,
    pub accepted_packets: u8,
    pub dropped_packets: u8,
    pub accepted_bytes: u32,
    pub dropped_bytes: u32,
}

/// `SparseHot::policy_id` of a range without an allow list.
pub const SPARSE_HOT_POLICY_NONE: u16 = u16::MAX;
/// `SparseHot::tag` bit: while the tag is the word in force, the slot's VIP is
/// in a live range in `PER_VIP_SPARSE` mode, or in `PER_VIP_SPARSE_DECLARED`
/// mode and not one of its declared VIPs, unchanged since, whose allow list
/// is `policy_id`: a packet to it is judged and counted from this slot alone.
pub const SPARSE_TAG_VOUCHES: u32 = 1;

impl SparseHot {
    /// The hot slot's narrow form of a range's `policy_id`, if it has one:
    /// ids past the narrow range never vouch (their packets read the range).
    #[inline(always)]
    pub fn policy_of(policy_id: u32) -> Option<u16> {
        if policy_id == crate::POLICY_NONE {
            Some(SPARSE_HOT_POLICY_NONE)
        } else if policy_id < u32::from(SPARSE_HOT_POLICY_NONE) {
            Some(policy_id as u16)
        } else {
            None
        }
    }

    /// The wide form of `policy_id`.
    #[inline(always)]
    pub fn policy(&self) -> u32 {
        if self.policy_id == SPARSE_HOT_POLICY_NONE {
            crate::POLICY_NONE
        } else {
            u32::from(self.policy_id)
        }
    }

    /// The low parts of the counts.
    pub fn verdicts(&self) -> Verdicts {
        Verdicts {
            accepted: Counter {
                packets: self.accepted_packets.into(),
                bytes: self.accepted_bytes.into(),
            },
            dropped: Counter {
                packets: self.dropped_packets.into(),
                bytes: self.dropped_bytes.into(),
            },
        }
    }
}

/// One slot of `MAP_SPARSE_COLD` on one CPU (layout 12 on): the rest of the
/// [`SparseHot`] slot at the same index. A hit touches it only to take the
/// slot, to check the slot's range when the slot does not vouch, and to carry
/// a hot counter that would wrap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SparseCold {
    /// Odd while the datapath rewrites this slot or its hot half (a carry, a
    /// take); readers retry a slot whose sequence was odd or moved.
    pub sequence: u32,
    pub range_id: u32,
    /// The range's epoch when the slot was taken.
    pub epoch: u32,
    pub _pad: u32,
    /// Counts carried out of the hot slot.
    pub verdicts: Verdicts,
}

impl SparseCold {
    /// The VIP's counts, hot and cold.
    pub fn total(&self, hot: &SparseHot) -> Verdicts {
        let mut total = self.verdicts;
        total.merge(&hot.verdicts());
        total
    }
}

/// A slot of the hashed per-VIP floors of the end-to-end bench (vip-baseline's
/// `floor_per_vip_hashed*`, never in vip's object): an address and its
/// counter, the least a hashed per-VIP table holds. A free slot holds `::`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FloorSlot {
    pub vip: crate::VipAddr,
    pub dropped: Counter,
}

/// Per-range counters that are not the sum of VIP slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RangeStats {
    /// Packets to VIPs of a sparse range that found no free slot in
    /// `MAP_SPARSE_STATS`; the range's totals are its VIP slots (sparse and
    /// declared) plus these plus its `RangePressure::reclaimed` and `unlearned`.
    pub sparse_overflow: Verdicts,
}

impl RangeStats {
    pub fn merge(&mut self, other: &RangeStats) {
        self.sparse_overflow.merge(&other.sparse_overflow);
    }
}

/// A range's counters on one CPU (layout 15 on), one row of
/// `MAP_RANGE_COUNTS`: what layouts 14 and older kept in three per-CPU arrays
/// (`MAP_RANGE_STATS`, `MAP_PRESSURE`, `MAP_DELIVERED`), in one row of two
/// cache lines, so that a read of every range on every CPU is one walk of
/// memory rather than three kernel copies of one value per possible CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RangeCounts {
    pub stats: RangeStats,
    pub pressure: crate::RangePressure,
    /// Socket lookups of the range's VIPs steered to a socket (`MAP_DELIVERED`'s
    /// value before layout 15).
    pub delivered: u64,
    pub _pad: u64,
}

impl RangeCounts {
    pub fn merge(&mut self, other: &RangeCounts) {
        self.stats.merge(&other.stats);
        self.pressure.merge(&other.pressure);
        self.delivered += other.delivered;
    }
}

const _: () = assert!(size_of::<Counter>() == 16);
const _: () = assert!(size_of::<Verdicts>() == 32);
const _: () = assert!(size_of::<SparseSlot>() == 64);
const _: () = assert!(size_of::<SparseHot>() == 32);
const _: () = assert!(size_of::<SparseCold>() == 48);
const _: () = assert!(size_of::<FloorSlot>() == 32);
const _: () = assert!(size_of::<RangeStats>() == 32);
const _: () = assert!(size_of::<RangeCounts>() == 128);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::Verdicts {}
    unsafe impl aya::Pod for super::SparseSlot {}
    unsafe impl aya::Pod for super::SparseHot {}
    unsafe impl aya::Pod for super::SparseCold {}
    unsafe impl aya::Pod for super::FloorSlot {}
    unsafe impl aya::Pod for super::RangeStats {}
    unsafe impl aya::Pod for super::RangeCounts {}
}
