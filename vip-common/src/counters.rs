//! Counter layout shared by the datapath and `vip stats`.
//!
//! Every frame lands in exactly one counter: a VIP slot (dense or sparse), a
//! sparse range's overflow, or one of the global counters below. There is no separate "all packets"
//! counter on the fast path: userspace sums the parts.

use bytemuck::{Pod, Zeroable};

/// Index into `MAP_GLOBAL_STATS`: well-formed frames whose destination is in no
/// range, non-IP frames included.
pub const GLOBAL_NON_VIP: u32 = 0;
/// Frames with a truncated header or a bad IP version or IHL. They pass untouched.
pub const GLOBAL_MALFORMED: u32 = 1;
/// A map lookup that cannot fail did (e.g. a dense slot out of bounds): a bug or a
/// half-written config. The packet passes.
pub const GLOBAL_INTERNAL_ERRORS: u32 = 2;
pub const GLOBAL_COUNTERS: u32 = 3;

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

    pub fn merge(&mut self, other: &Counter) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

/// Per-range counters that are not the sum of VIP slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RangeStats {
    /// Packets to VIPs of a sparse range that found no free slot in
    /// `MAP_SPARSE_STATS`; the range's total is its VIP slots plus these.
    pub sparse_overflow: Counter,
}

impl RangeStats {
    pub fn merge(&mut self, other: &RangeStats) {
        self.sparse_overflow.merge(&other.sparse_overflow);
    }
}

const _: () = assert!(core::mem::size_of::<Counter>() == 16);
const _: () = assert!(core::mem::size_of::<RangeStats>() == 16);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::RangeStats {}
}
