//! The counter maps and every counter update.
//!
//! Map sizes here are placeholders: userspace sets each one from the config at load
//! time. The statics are named exactly as the `MAP_*` constants in vip-common.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{Array, PerCpuArray, PerCpuHashMap},
};
use vip_common::{
    AttachMeta, RangeMeta, RangeStats, RangeValue, SparseSlot, Verdicts, VipAddr, GLOBAL_COUNTERS,
    PER_VIP_DENSE, PER_VIP_SPARSE,
};

#[map]
static VIP_RANGE_STATS: PerCpuArray<RangeStats> = PerCpuArray::with_max_entries(1, 0);
#[map]
static VIP_DENSE_STATS: PerCpuArray<Verdicts> = PerCpuArray::with_max_entries(1, 0);
#[map]
static VIP_SPARSE_STATS: PerCpuHashMap<VipAddr, SparseSlot> = PerCpuHashMap::with_max_entries(1, 0);
#[map]
static VIP_GLOBAL: PerCpuArray<u64> = PerCpuArray::with_max_entries(GLOBAL_COUNTERS, 0);

const EEXIST: i32 = 17;

/// A map operation that cannot fail did; counted as `GLOBAL_INTERNAL_ERRORS`.
pub struct MapInconsistent;

#[inline(always)]
pub fn global(index: u32) {
    if let Some(slot) = VIP_GLOBAL.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, and XDP/TC programs do not nest on one CPU.
        unsafe { *slot += 1 };
    }
}

/// Counts one packet of `bytes` to an IPv4 VIP of `range`.
#[inline(always)]
pub fn v4_hit(
    range: &RangeValue,
    addr_be: [u8; 4],
    bytes: u64,
    drop: bool,
) -> Result<(), MapInconsistent> {
    if range.per_vip_mode != PER_VIP_DENSE {
        let vip = VipAddr::from_v4_be(addr_be);
        return sparse_hit(range, &vip, sparse_slot(&vip), bytes, drop);
    }
    let offset = u32::from_be_bytes(addr_be).wrapping_sub(range.network_v4_host);
    let slot = VIP_DENSE_STATS
        .get_ptr_mut(range.dense_base.wrapping_add(offset))
        .ok_or(MapInconsistent)?;
    // SAFETY: per-CPU slot, and XDP/TC programs do not nest on one CPU.
    unsafe { (*slot).side(drop).add(bytes) };
    Ok(())
}

/// This CPU's slot of a sparse VIP, if it has one.
#[inline(always)]
pub fn sparse_slot(vip: &VipAddr) -> Option<*mut SparseSlot> {
    VIP_SPARSE_STATS.get_ptr_mut(vip)
}

/// The range a sparse slot recorded on this CPU (1 + id), or 0.
#[inline(always)]
pub fn cached_range(slot: *mut SparseSlot) -> u32 {
    // SAFETY: per-CPU slot, as above.
    unsafe { (*slot).range_slot }
}

/// Counts one packet to `vip` of sparse `range`: in its slot (found earlier as
/// `slot`, or created now), or as the range's overflow when the table is full.
#[inline(always)]
pub fn sparse_hit(
    range: &RangeValue,
    vip: &VipAddr,
    slot: Option<*mut SparseSlot>,
    bytes: u64,
    drop: bool,
) -> Result<(), MapInconsistent> {
    if range.per_vip_mode != PER_VIP_SPARSE {
        return Err(MapInconsistent);
    }
    if let Some(slot) = slot {
        // SAFETY: as above.
        unsafe {
            (*slot).range_slot = range.range_id + 1;
            (*slot).verdicts.side(drop).add(bytes);
        }
        return Ok(());
    }
    let mut first = SparseSlot {
        range_slot: range.range_id + 1,
        ..SparseSlot::default()
    };
    first.verdicts.side(drop).add(bytes);
    match VIP_SPARSE_STATS.insert(vip, &first, u64::from(BPF_NOEXIST)) {
        Ok(()) => return Ok(()),
        // Another CPU created the slot between our lookup and insert.
        Err(e) if e == -EEXIST => {
            if let Some(slot) = sparse_slot(vip) {
                // SAFETY: as above.
                unsafe {
                    (*slot).range_slot = range.range_id + 1;
                    (*slot).verdicts.side(drop).add(bytes);
                }
                return Ok(());
            }
        }
        // -E2BIG: the table is full.
        Err(_) => {}
    }
    let stats = VIP_RANGE_STATS
        .get_ptr_mut(range.range_id)
        .ok_or(MapInconsistent)?;
    // SAFETY: as above.
    unsafe { (*stats).sparse_overflow.side(drop).add(bytes) };
    Ok(())
}

// Written by userspace only, for `vip stats`; declared here so that every map of the
// datapath is created by one loader and found under one name.
#[map]
static VIP_RANGE_META: Array<RangeMeta> = Array::with_max_entries(1, 0);
#[map]
static VIP_ATTACH_META: Array<AttachMeta> = Array::with_max_entries(1, 0);
