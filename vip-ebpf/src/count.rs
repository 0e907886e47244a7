//! The counter maps and every counter update.
//!
//! Map sizes here are placeholders: userspace sets each one from the config at load
//! time. The statics are named exactly as the `MAP_*` constants in vip-common.

use core::ptr::NonNull;

use aya_ebpf::{
    helpers::bpf_get_smp_processor_id,
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use vip_common::{
    sparse_hash, sparse_hash_multiply, sparse_tag_idle, AttachMeta, Counter, DatapathInfo,
    DeclaredVip, RangeCounts, RangeMeta, RangePressure, RangeStats, RangeValue, SparseCold,
    SparseControl, SparseHot, SparseSlot, Verdicts, VipAddr, CPU_TABLE_MAP_FLAGS, GLOBAL_COUNTERS,
    PER_VIP_DECLARED_ONLY, PER_VIP_DENSE, PER_VIP_SPARSE, PER_VIP_SPARSE_DECLARED, SETTINGS,
    SPARSE_HASH_MULTIPLY, SPARSE_HOT_POLICY_NONE, SPARSE_PROBES, SPARSE_TAG_VOUCHES,
};

use crate::lookup;

// Programs of layout 14 and older count in these two; declared so that the
// object creates them (one entry on a new datapath) and an upgrade keeps them.
#[map]
static VIP_RANGE_STATS: PerCpuArray<RangeStats> = PerCpuArray::with_max_entries(1, 0);
#[map]
static VIP_PRESSURE: PerCpuArray<RangePressure> = PerCpuArray::with_max_entries(1, 0);
#[map]
static VIP_RANGE_COUNTS: Array<RangeCounts> = Array::with_max_entries(1, CPU_TABLE_MAP_FLAGS);
// Programs of layout 13 and older count in it; declared so that the object
// creates it (one page per CPU on a new datapath) and an upgrade keeps it.
#[map]
static VIP_DENSE_STATS: Array<Verdicts> = Array::with_max_entries(1, CPU_TABLE_MAP_FLAGS);
#[map]
static VIP_DENSE_COUNTS: Array<Counter> = Array::with_max_entries(1, CPU_TABLE_MAP_FLAGS);
// Programs of layout 11 and older count in it; declared so that the object
// creates it (one page per CPU on a new datapath) and an upgrade keeps it.
#[map]
static VIP_SPARSE_STATS: Array<SparseSlot> = Array::with_max_entries(1, CPU_TABLE_MAP_FLAGS);
#[map]
static VIP_SPARSE_HOT: Array<SparseHot> = Array::with_max_entries(1, CPU_TABLE_MAP_FLAGS);
#[map]
static VIP_SPARSE_COLD: Array<SparseCold> = Array::with_max_entries(1, CPU_TABLE_MAP_FLAGS);
#[map]
static VIP_SPARSE_TAG: Array<u32> = Array::with_max_entries(1, 0);
// Read by userspace only since layout 8 (the programs get the stride and the
// mask as loader-set constants, below); declared so the object creates it.
#[map]
static VIP_SETTINGS: Array<u32> = Array::with_max_entries(SETTINGS, 0);
#[map]
static VIP_GLOBAL: PerCpuArray<u64> = PerCpuArray::with_max_entries(GLOBAL_COUNTERS, 0);
#[map]
static VIP_SPARSE_CTL: Array<SparseControl> = Array::with_max_entries(1, 0);
#[map]
static VIP_DECLARED: HashMap<VipAddr, DeclaredVip> = HashMap::with_max_entries(1, 0);
// Programs of layout 11 read it; declared so the object creates it.
#[map]
static VIP_RANGES_VERSION: Array<u32> = Array::with_max_entries(1, 0);

/// Slots per CPU of `VIP_DENSE_COUNTS` (both halves), where a CPU's dropped
/// half starts, and the sparse table's mask, set by the loader from the layout
/// (`vip_common::GLOBAL_*`). Fixed for the datapath's life, so constants in the
/// program's read-only data rather than a map lookup per packet.
#[unsafe(no_mangle)]
static VIP_DENSE_STRIDE: u32 = 0;
#[unsafe(no_mangle)]
static VIP_DENSE_DROPPED: u32 = 0;
#[unsafe(no_mangle)]
static VIP_SPARSE_MASK: u32 = 0;
/// Rows per CPU of `VIP_RANGE_COUNTS`, set by the loader as the two above.
#[unsafe(no_mangle)]
static VIP_RANGE_STRIDE: u32 = 0;
/// `SparseControl::hash_kind` of the datapath, and for `SPARSE_HASH_MULTIPLY`
/// its multipliers (`vip_common::sparse_multipliers` of the key), set by the
/// loader like the two above: both are fixed for the datapath's life, and as
/// constants the hash need not wait for the control entry's lookup.
#[unsafe(no_mangle)]
static VIP_SPARSE_HASH_KIND: u32 = 0;
#[unsafe(no_mangle)]
static VIP_SPARSE_MULTIPLIERS: [u64; 4] = [0; 4];

#[inline(always)]
fn loader_constant(value: &'static u32) -> u32 {
    // SAFETY: a static. Read volatile, or the compiler folds the 0 above.
    unsafe { core::ptr::read_volatile(value) }
}

/// The CPU this program runs on: its stretch of the CPU tables.
#[inline(always)]
fn cpu() -> u32 {
    // SAFETY: a helper without arguments, available to XDP and TC programs.
    unsafe { bpf_get_smp_processor_id() }
}

/// A map operation that cannot fail did; counted as `GLOBAL_INTERNAL_ERRORS`.
pub struct MapInconsistent;

#[inline(always)]
pub fn global(index: u32) {
    add(&VIP_GLOBAL, index);
}

/// Adds one to this CPU's `array[index]`, if there is such an entry.
#[inline(always)]
pub fn add(array: &PerCpuArray<u64>, index: u32) {
    bump(slot(array, index));
}

/// This CPU's `VIP_GLOBAL[index]`, to [`bump`] later.
#[inline(always)]
pub fn global_slot(index: u32) -> Option<NonNull<u64>> {
    slot(&VIP_GLOBAL, index)
}

#[inline(always)]
fn slot(array: &PerCpuArray<u64>, index: u32) -> Option<NonNull<u64>> {
    array.get_ptr_mut(index).and_then(NonNull::new)
}

/// Adds one to a per-CPU counter slot, if there is one.
#[inline(always)]
pub fn bump(slot: Option<NonNull<u64>>) {
    if let Some(slot) = slot {
        // SAFETY: a per-CPU slot, and programs do not nest on one CPU.
        unsafe { *slot.as_ptr() += 1 };
    }
}

/// Counts one packet of `bytes` to an IPv4 VIP.
#[inline(always)]
pub fn v4_hit(
    target: &lookup::V4Target,
    addr_be: [u8; 4],
    bytes: u64,
    drop: bool,
) -> Result<(), MapInconsistent> {
    let Some(range) = target.range else {
        return dense_hit(target.dense_slot, bytes, drop);
    };
    if range.per_vip_mode != PER_VIP_DENSE {
        let vip = VipAddr::from_v4_be(addr_be);
        // Its range was read already, before the tag word: never vouches.
        let found = sparse_find(&vip, false)?;
        return sparse_hit(range, &vip, found, holds(found, range)?, false, bytes, drop);
    }
    let offset = u32::from_be_bytes(addr_be).wrapping_sub(range.network_v4_host);
    dense_hit(range.dense_base.wrapping_add(offset), bytes, drop)
}

/// Counts one packet in this CPU's slot `index` of the dense table, in its
/// accepted or dropped half.
#[inline(always)]
pub fn dense_hit(index: u32, bytes: u64, drop: bool) -> Result<(), MapInconsistent> {
    let stride = loader_constant(&VIP_DENSE_STRIDE);
    let verdict_half = if drop {
        loader_constant(&VIP_DENSE_DROPPED)
    } else {
        0
    };
    let slot = VIP_DENSE_COUNTS
        .get_ptr_mut(
            cpu()
                .wrapping_mul(stride)
                .wrapping_add(verdict_half)
                .wrapping_add(index),
        )
        .ok_or(MapInconsistent)?;
    // SAFETY: this CPU's slot, and XDP/TC programs do not nest on one CPU.
    unsafe { (*slot).add(bytes) };
    Ok(())
}

/// Where a sparse VIP is, or can go, in this CPU's table. A struct whose fields
/// are always set rather than an enum: the verifier refuses to see an enum's
/// unset payload copied, and the compiler copies it.
#[derive(Clone, Copy)]
pub struct Sparse {
    /// The VIP's hot slot, or a free or idle one to take; null when every
    /// probed slot holds another VIP seen lately.
    hot: *mut SparseHot,
    /// `hot`'s index in the CPU tables, its cold half's too.
    index: u32,
    /// `hot` is the VIP's (its range may since have been removed by a reload).
    found: bool,
    /// The tag word, read before any range ([`sparse_find`]).
    word: u32,
    /// Whether a count may mark the slot as vouching: the caller reads the
    /// VIP's range only after the tag word.
    vouchable: bool,
}

/// Probes this CPU's table for `vip`. The table is never emptied, so a never-used
/// slot ends the search; slots idle for `sparse_idle_seconds` (those of removed
/// ranges among them) are taken over. The tag word is read first: a caller
/// that reads the VIP's range after this call passes `vouchable`, so that a
/// slot it marks with the word was judged under ranges at least that recent.
#[inline(always)]
pub fn sparse_find(vip: &VipAddr, vouchable: bool) -> Result<Sparse, MapInconsistent> {
    // An error rather than a default: on kernels before 6.8 or so the verifier
    // takes an array lookup as maybe-null even with a constant key, and a
    // default would double every path after it.
    let word = VIP_SPARSE_TAG.get(0).copied().ok_or(MapInconsistent)?;
    let mask = loader_constant(&VIP_SPARSE_MASK);
    let base = cpu().wrapping_mul(mask.wrapping_add(1));
    let start = if loader_constant(&VIP_SPARSE_HASH_KIND) == SPARSE_HASH_MULTIPLY {
        // SAFETY: a static. Read volatile, or the compiler folds the zeros above.
        sparse_hash_multiply(vip, &unsafe {
            core::ptr::read_volatile(&VIP_SPARSE_MULTIPLIERS)
        })
    } else {
        let control = VIP_SPARSE_CTL.get(0).ok_or(MapInconsistent)?;
        sparse_hash(vip, control.hash_key)
    };
    let mut reusable: *mut SparseHot = core::ptr::null_mut();
    let mut reusable_index = 0;
    for i in 0..SPARSE_PROBES {
        let index = base.wrapping_add(start.wrapping_add(i) & mask);
        let Some(slot) = VIP_SPARSE_HOT.get_ptr_mut(index) else {
            break;
        };
        // SAFETY: per-CPU slot, as above.
        let current = unsafe { &*slot };
        if current.tag == 0 {
            let (hot, index) = if reusable.is_null() {
                (slot, index)
            } else {
                (reusable, reusable_index)
            };
            return Ok(Sparse {
                hot,
                index,
                found: false,
                word,
                vouchable,
            });
        }
        if current.vip == *vip {
            return Ok(Sparse {
                hot: slot,
                index,
                found: true,
                word,
                vouchable,
            });
        }
        // A slot of a range a reload removed is never stamped again, so it
        // goes idle like any other.
        if reusable.is_null() && sparse_tag_idle(word, current.tag) {
            reusable = slot;
            reusable_index = index;
        }
    }
    Ok(Sparse {
        hot: reusable,
        index: reusable_index,
        found: false,
        word,
        vouchable,
    })
}

/// `found`'s hot slot if it is the VIP's own (its range may since have been
/// removed by a reload).
#[inline(always)]
fn own_slot(found: Sparse) -> Option<*mut SparseHot> {
    (found.found && !found.hot.is_null()).then_some(found.hot)
}

/// The allow list to judge a packet by, if `found`'s slot vouches for its VIP:
/// stamped with the tag word in force, so its range is still live, counts per
/// VIP in the sparse table, and has that list. Nothing else is read.
#[inline(always)]
pub fn vouched_policy(found: Sparse) -> Option<u32> {
    let slot = own_slot(found)?;
    // SAFETY: per-CPU slot, as above.
    let slot = unsafe { &*slot };
    (slot.tag == found.word | SPARSE_TAG_VOUCHES).then(|| slot.policy())
}

/// The range of a slot's cold half, if a reload has not removed it since.
#[inline(always)]
fn live_range(cold: &SparseCold) -> Option<&'static RangeValue> {
    lookup::range_by_id(cold.range_id).filter(|range| range.epoch == cold.epoch)
}

/// This CPU's cold half of the slot at `index`.
#[inline(always)]
fn cold(index: u32) -> Result<&'static mut SparseCold, MapInconsistent> {
    let cold = VIP_SPARSE_COLD.get_ptr_mut(index).ok_or(MapInconsistent)?;
    // SAFETY: per-CPU slot, as above.
    Ok(unsafe { &mut *cold })
}

/// The live range of a found slot, without a trie lookup. When there is one,
/// the slot already counts for it ([`sparse_hit`]'s `held`).
#[inline(always)]
pub fn found_range(found: Sparse) -> Result<Option<&'static RangeValue>, MapInconsistent> {
    if own_slot(found).is_none() {
        return Ok(None);
    }
    Ok(live_range(cold(found.index)?))
}

/// Whether `found` is `vip`'s slot and counts for `range` as it is now (a
/// reload has not replaced the range since the slot was taken).
#[inline(always)]
fn holds(found: Sparse, range: &RangeValue) -> Result<bool, MapInconsistent> {
    if own_slot(found).is_none() {
        return Ok(false);
    }
    let cold = cold(found.index)?;
    Ok(cold.epoch == range.epoch && cold.range_id == range.range_id)
}

/// Counts one packet to `vip` of sparse `range`: in its declared slot if it is
/// a declared VIP, else in the slot `sparse_find` gave (taking it unless
/// `held`: the slot already counts `vip` for `range`, see [`holds`] and
/// [`found_range`]), or as the range's overflow when every probed slot is busy.
/// `undeclared`: the block index has shown `vip` is not one of the range's
/// declared VIPs, so `VIP_DECLARED` need not be asked.
#[inline(always)]
pub fn sparse_hit(
    range: &RangeValue,
    vip: &VipAddr,
    found: Sparse,
    held: bool,
    undeclared: bool,
    bytes: u64,
    drop: bool,
) -> Result<(), MapInconsistent> {
    match range.per_vip_mode {
        PER_VIP_SPARSE => {}
        // An IPv6 dense range found through the trie: while a reload writes
        // its block, or one that shares its /112 with a range an upgrade
        // kept sparse.
        PER_VIP_DENSE => return dense_hit(lookup::dense_slot(range, vip), bytes, drop),
        PER_VIP_SPARSE_DECLARED | PER_VIP_DECLARED_ONLY => {
            // SAFETY: the value is copied out at once, before any update.
            let declared = if undeclared {
                None
            } else {
                unsafe { VIP_DECLARED.get(vip) }.copied()
            };
            if let Some(declared) = declared {
                if declared.epoch == range.epoch {
                    return dense_hit(declared.dense_index, bytes, drop);
                }
            }
            if range.per_vip_mode == PER_VIP_DECLARED_ONLY {
                let pressure = pressure(range.range_id)?;
                pressure.unlearned.side(drop).add(bytes);
                return Ok(());
            }
        }
        _ => return Err(MapInconsistent),
    }
    if found.hot.is_null() {
        range_counts(range.range_id)?
            .stats
            .sparse_overflow
            .side(drop)
            .add(bytes);
        return Ok(());
    }
    // The range was read after the tag word was, so it is at least as recent
    // as the word says. A declaring range's VIP gets here only when it is not
    // one of the range's declared VIPs; a range's declared VIPs change only
    // with the range (a new epoch), in a reload, which moves the word on, so
    // while the slot's word is in force its VIP is still undeclared.
    let policy = SparseHot::policy_of(range.policy_id);
    let vouches = found.vouchable
        && matches!(range.per_vip_mode, PER_VIP_SPARSE | PER_VIP_SPARSE_DECLARED)
        && policy.is_some();
    let tag = if vouches {
        found.word | SPARSE_TAG_VOUCHES
    } else {
        found.word
    };
    let policy_id = policy.unwrap_or(SPARSE_HOT_POLICY_NONE);
    // `held` was decided on this slot by `holds` or `found_range`, and nothing
    // ran on this CPU since: neither the address nor the range is compared again.
    if held {
        // SAFETY: per-CPU slot, as above.
        let hot = unsafe { &mut *found.hot };
        hot.tag = tag;
        hot.policy_id = policy_id;
    } else {
        take(found, range, vip, tag, policy_id)?;
    }
    hot_hit(found, bytes, drop)
}

/// Counts one packet of `bytes` in `found`'s hot slot (the VIP's, found or
/// just taken, e.g. one [`vouched_policy`] vouched for); a counter that would
/// wrap is carried, with the packet, into the cold half.
#[inline(always)]
pub fn hot_hit(found: Sparse, bytes: u64, drop: bool) -> Result<(), MapInconsistent> {
    // SAFETY: per-CPU slot, as above; callers pass a found or taken slot.
    let hot = unsafe { &mut *found.hot };
    let (packets, hot_bytes) = if drop {
        (&mut hot.dropped_packets, &mut hot.dropped_bytes)
    } else {
        (&mut hot.accepted_packets, &mut hot.accepted_bytes)
    };
    // A frame is far shorter than 4 GiB.
    if let Some(sum) = hot_bytes.checked_add(bytes as u32) {
        if *packets != u8::MAX {
            *packets += 1;
            *hot_bytes = sum;
            return Ok(());
        }
    }
    let cold = cold(found.index)?;
    let moved = Counter {
        packets: u64::from(*packets) + 1,
        bytes: u64::from(*hot_bytes) + bytes,
    };
    // Volatile, so that the compiler keeps every store between the two
    // sequence moves (x86-64 keeps their order; see NOTES.md for arm64).
    move_sequence(cold);
    let side = cold.verdicts.side(drop);
    let total = Counter {
        packets: side.packets + moved.packets,
        bytes: side.bytes + moved.bytes,
    };
    // SAFETY: per-CPU slots, as above.
    unsafe {
        core::ptr::write_volatile(side, total);
        core::ptr::write_volatile(packets, 0);
        core::ptr::write_volatile(hot_bytes, 0);
    }
    move_sequence(cold);
    Ok(())
}

/// Moves the slot's sequence on: odd before a rewrite of either half, even
/// again after it.
#[inline(always)]
fn move_sequence(cold: &mut SparseCold) {
    // SAFETY: per-CPU slot, as above.
    unsafe { core::ptr::write_volatile(&mut cold.sequence, cold.sequence.wrapping_add(1)) };
}

/// Starts `found`'s slot afresh for `vip`, stamped with `tag`. An idle VIP
/// of a live range first moves its counts into its range's pressure counters,
/// on this CPU like the slot, so the range's totals do not change.
#[inline(always)]
fn take(
    found: Sparse,
    range: &RangeValue,
    vip: &VipAddr,
    tag: u32,
    policy_id: u16,
) -> Result<(), MapInconsistent> {
    let cold = cold(found.index)?;
    // SAFETY: per-CPU slot, as above.
    let hot = unsafe { &mut *found.hot };
    if hot.tag != 0 {
        if let Some(owner) = live_range(cold) {
            let pressure = pressure(owner.range_id)?;
            pressure.reclaimed.merge(&cold.total(hot));
            pressure.slots_reclaimed += 1;
        }
    }
    move_sequence(cold);
    let fresh_cold = SparseCold {
        sequence: cold.sequence,
        range_id: range.range_id,
        epoch: range.epoch,
        _pad: 0,
        verdicts: Verdicts::default(),
    };
    let fresh_hot = SparseHot {
        vip: *vip,
        tag,
        policy_id,
        ..SparseHot::default()
    };
    // SAFETY: per-CPU slots, as above.
    unsafe {
        core::ptr::write_volatile(cold, fresh_cold);
        core::ptr::write_volatile(hot, fresh_hot);
    }
    move_sequence(cold);
    pressure(range.range_id)?.slots_learned += 1;
    Ok(())
}

/// This CPU's pressure counters of range `range_id`.
#[inline(always)]
fn pressure(range_id: u32) -> Result<&'static mut RangePressure, MapInconsistent> {
    Ok(&mut range_counts(range_id)?.pressure)
}

/// This CPU's row of range `range_id` in `VIP_RANGE_COUNTS`.
#[inline(always)]
pub fn range_counts(range_id: u32) -> Result<&'static mut RangeCounts, MapInconsistent> {
    let stride = loader_constant(&VIP_RANGE_STRIDE);
    if range_id >= stride {
        return Err(MapInconsistent);
    }
    let row = VIP_RANGE_COUNTS
        .get_ptr_mut(cpu().wrapping_mul(stride).wrapping_add(range_id))
        .ok_or(MapInconsistent)?;
    // SAFETY: this CPU's row, and XDP, TC and sk_lookup programs do not nest
    // on one CPU.
    Ok(unsafe { &mut *row })
}

// Written by userspace only, for `vip stats`; declared here so that every map of the
// datapath is created by one loader and found under one name.
#[map]
static VIP_RANGE_META: Array<RangeMeta> = Array::with_max_entries(1, 0);
#[map]
static VIP_ATTACH_META: Array<AttachMeta> = Array::with_max_entries(1, 0);
#[map]
static VIP_INFO: Array<DatapathInfo> = Array::with_max_entries(1, 0);
