//! Writing a [`Layout`] into the maps: all of it at load, or the difference from
//! the previous layout on a reload, in an order that never points a lookup at a
//! half-written entry.

use std::collections::BTreeMap;

use aya::maps::{
    lpm_trie::Key, Array, HashMap, LpmTrie, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues,
};
use ipnet::IpNet;
use vip_common::{
    port_bitmap_index, sparse_tag_reloaded, DecapConfig, DeclaredVip, RangeMeta, RangePolicy,
    RangePressure, RangeStats, RangeValue, SteerKey, SteerValue, SteeredVip, V4Slash24, V6Block,
    VipAddr, IPPROTO_TCP, IPPROTO_UDP, LAYOUT_VERSION, MAP_DECAP, MAP_DECLARED, MAP_DELIVERED,
    MAP_POLICY, MAP_PORTS, MAP_PRESSURE, MAP_RANGES, MAP_RANGES_VERSION, MAP_RANGE_META,
    MAP_RANGE_STATS, MAP_SETTINGS, MAP_STEER, MAP_STEERED_VIPS, MAP_STEER_STATS, MAP_V4_L1,
    MAP_V4_L2, MAP_V4_RANGES, MAP_V4_SLASH24, MAP_V6_BLOCKS, MAP_V6_RANGES, SETTING_DENSE_STRIDE,
    SETTING_LAYOUT_VERSION, SETTING_NETNS_INODE, SETTING_SPARSE_MASK, V6_BLOCK_RANGE,
    V6_BLOCK_REMOVED,
};

use super::{
    batch,
    maps::{Maps, MapsError},
    sparse_control, DatapathError,
};
use crate::layout::{
    block_writes, port_bitmap, slash24_writes, DecapEntry, Layout, RangeSlot, SteerSlot,
};

fn map_err(map: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { map, source }
}

fn same(a: &RangeSlot, b: &RangeSlot) -> bool {
    a.value.range_id == b.value.range_id && a.name == b.name && a.cidr == b.cidr
}

/// Writes `new` (all of it, or its difference from `old`), then moves the
/// ranges' version and the sparse tag word on, also when a write failed
/// half-way: whatever it did change, no sparse slot vouches for a VIP under
/// the ranges before it. Only then are the allow lists no range uses any
/// more retired: a slot that vouched judged its VIP's packets by its list's
/// id alone, and a retired list allows nothing.
pub(super) fn sync(
    maps: &mut Maps,
    old: Option<&Layout>,
    new: &Layout,
) -> Result<(), DatapathError> {
    let written = write(maps, old, new);
    let version = next_ranges_version(maps);
    let tag = sparse_control::move_tag(maps, sparse_tag_reloaded);
    written.and(version).and(tag)?;
    retire_policies(maps, old, new)
}

/// Zeroes the allow lists of `old` that `new` no longer has.
fn retire_policies(
    maps: &mut Maps,
    old: Option<&Layout>,
    new: &Layout,
) -> Result<(), DatapathError> {
    let old_policies: &[(u32, RangePolicy)] = old.map_or(&[], |l| &l.policies);
    for entry in old_policies {
        if !new.policies.iter().any(|(id, _)| *id == entry.0) {
            write_policy(maps, entry.0, &bytemuck::Zeroable::zeroed())?;
            crate::fault::at("reload-list-retired");
        }
    }
    Ok(())
}

fn write(maps: &mut Maps, old: Option<&Layout>, new: &Layout) -> Result<(), DatapathError> {
    let old_ranges: &[RangeSlot] = old.map_or(&[], |l| &l.ranges);
    let added: Vec<&RangeSlot> = new
        .ranges
        .iter()
        .filter(|n| !old_ranges.iter().any(|o| same(o, n)))
        .collect();
    let removed: Vec<&RangeSlot> = old_ranges
        .iter()
        .filter(|o| !new.ranges.iter().any(|n| same(o, n)))
        .collect();

    // Allow lists first: a new one has an id no live range points at.
    let old_policies: &[(u32, RangePolicy)] = old.map_or(&[], |l| &l.policies);
    for entry in &new.policies {
        if !old_policies.contains(entry) {
            write_policy(maps, entry.0, &entry.1)?;
        }
    }
    // A sparse range's entry by its /64 that goes (its range removed, or a
    // range added inside its /64) goes before any new range is findable.
    retire_v6_ranges(maps, old, new)?;
    // New ranges: clean counters, then their entries and declared VIPs, then
    // make them findable.
    if old.is_some() {
        zero_counters(maps, &added)?;
    }
    for slot in &added {
        write_entries(maps, slot)?;
        declare(maps, slot)?;
        trie(maps, slot, true)?;
    }
    // Kept ranges whose allow list changed point at the new one (in the range
    // array and in the trie, which holds a copy of the value).
    for slot in &new.ranges {
        if let Some(previous) = old_ranges.iter().find(|o| same(o, slot)) {
            if previous.value != slot.value {
                set(maps, MAP_RANGES, slot.value.range_id, slot.value)?;
                trie(maps, slot, true)?;
            }
        }
    }
    sync_index(maps, old, new)?;
    sync_v6_blocks(maps, old, new)?;
    const FAULT_STEP: &str = "sync-indexes-written";
    if old.is_some() && crate::fault::fails(FAULT_STEP) {
        return Err(DatapathError::Fault { step: FAULT_STEP });
    }
    // Removed ranges: unfindable first (unless a new range took over the
    // same CIDR and so its trie key), then their entries go.
    for slot in &removed {
        if !added.iter().any(|n| n.cidr == slot.cidr) {
            trie(maps, slot, false)?;
        }
        clear_entries(maps, slot)?;
        undeclare(maps, slot, new)?;
    }
    // Sparse ranges' entries by their /64 last: once no removed range is
    // findable, and after their declared VIPs' entries.
    write_v6_ranges(maps, old, new)?;
    if old.is_none() {
        set(
            maps,
            MAP_SETTINGS,
            SETTING_SPARSE_MASK,
            new.sparse_slots - 1,
        )?;
        set(maps, MAP_SETTINGS, SETTING_DENSE_STRIDE, new.dense_half())?;
        set(maps, MAP_SETTINGS, SETTING_LAYOUT_VERSION, LAYOUT_VERSION)?;
        set(maps, MAP_SETTINGS, SETTING_NETNS_INODE, netns_inode())?;
    }
    sync_decap(maps, old, new)?;
    sync_steer(maps, old, new)?;
    // Sparse slots of removed ranges need nothing: their epoch no longer matches
    // a live range, so the datapath reuses them and `vip stats` skips them.
    Ok(())
}

/// Moves the ranges' version on, once every range is written: a slot of
/// `MAP_SPARSE_STATS` marked under an older one reads its range again (programs
/// of layout 11, during an upgrade; layout 12's read the sparse tag word). The datapath reads the
/// version before the range, so a slot it marks with the new version was
/// judged under the new ranges (loads are not reordered with loads on
/// x86-64; see NOTES.md).
fn next_ranges_version(maps: &mut Maps) -> Result<(), DatapathError> {
    let array: Array<_, u32> = maps.typed_mut(MAP_RANGES_VERSION)?;
    let version = array.get(&0, 0).map_err(map_err(MAP_RANGES_VERSION))?;
    // 0 marks nothing; wrapping to 1 takes 2^32 reloads.
    set(maps, MAP_RANGES_VERSION, 0, version.wrapping_add(1).max(1))
}

/// Allow list `id`: its port bitmaps, then its entry.
fn write_policy(maps: &mut Maps, id: u32, policy: &RangePolicy) -> Result<(), DatapathError> {
    write_ports(maps, id, policy)?;
    set(maps, MAP_POLICY, id, *policy)
}

fn write_ports(maps: &mut Maps, id: u32, policy: &RangePolicy) -> Result<(), DatapathError> {
    for (proto, udp) in [(IPPROTO_TCP, false), (IPPROTO_UDP, true)] {
        let bitmap = port_bitmap(policy, proto);
        set(maps, MAP_PORTS, port_bitmap_index(id, udp), bitmap)?;
    }
    Ok(())
}

/// Into a `MAP_PORTS` an upgrade has just created: the port bitmaps of the
/// allow lists `new` keeps from `old` (same id, same list). [`sync`] writes
/// only the lists that change, bitmaps and all.
pub(super) fn fill_ports(maps: &mut Maps, old: &Layout, new: &Layout) -> Result<(), DatapathError> {
    for (id, policy) in new.policies.iter().filter(|p| old.policies.contains(p)) {
        write_ports(maps, *id, policy)?;
    }
    Ok(())
}

/// Points each declared VIP of a new range at its dense slot.
fn declare(maps: &mut Maps, slot: &RangeSlot) -> Result<(), DatapathError> {
    let mut declared: HashMap<_, VipAddr, DeclaredVip> = maps.typed_mut(MAP_DECLARED)?;
    for (addr, dense_index) in slot.declared_slots() {
        let value = DeclaredVip {
            dense_index,
            epoch: slot.value.epoch,
        };
        declared
            .insert(VipAddr::from_ip(addr), value, 0)
            .map_err(map_err(MAP_DECLARED))?;
    }
    Ok(())
}

/// Removes the declared VIPs of a removed range that no range of `new`
/// declares (a range that replaced it has written its own entry over them).
fn undeclare(maps: &mut Maps, slot: &RangeSlot, new: &Layout) -> Result<(), DatapathError> {
    let mut declared: HashMap<_, VipAddr, DeclaredVip> = maps.typed_mut(MAP_DECLARED)?;
    for addr in &slot.declared {
        if new.ranges.iter().any(|n| n.declared.contains(addr)) {
            continue;
        }
        removed(MAP_DECLARED, declared.remove(&VipAddr::from_ip(*addr)))?;
    }
    Ok(())
}

fn set<V: aya::Pod>(
    maps: &mut Maps,
    map: &'static str,
    index: u32,
    value: V,
) -> Result<(), DatapathError> {
    let mut array: Array<_, V> = maps.typed_mut(map)?;
    array.set(index, value, 0).map_err(map_err(map))
}

fn write_entries(maps: &mut Maps, slot: &RangeSlot) -> Result<(), DatapathError> {
    let id = slot.value.range_id;
    set(maps, MAP_RANGES, id, slot.value)?;
    set(maps, MAP_RANGE_META, id, slot.meta())
}

fn clear_entries(maps: &mut Maps, slot: &RangeSlot) -> Result<(), DatapathError> {
    let id = slot.value.range_id;
    set(
        maps,
        MAP_RANGE_META,
        id,
        <RangeMeta as bytemuck::Zeroable>::zeroed(),
    )?;
    set(maps, MAP_RANGES, id, RangeValue::default())
}

/// Makes `slot`'s range findable in its family's trie, or unfindable. A range
/// already gone is not an error: a reload killed after it removed the range
/// leaves a layout file that still holds it, and the next start removes it
/// again.
fn trie(maps: &mut Maps, slot: &RangeSlot, insert: bool) -> Result<(), DatapathError> {
    let (map, written) = match slot.cidr {
        IpNet::V4(net) => {
            let mut trie: LpmTrie<_, [u8; 4], RangeValue> = maps.typed_mut(MAP_V4_RANGES)?;
            let key = Key::new(u32::from(net.prefix_len()), net.network().octets());
            let written = if insert {
                trie.insert(&key, slot.value, 0)
            } else {
                trie.remove(&key)
            };
            (MAP_V4_RANGES, written)
        }
        IpNet::V6(net) => {
            let mut trie: LpmTrie<_, [u8; 16], RangeValue> = maps.typed_mut(MAP_V6_RANGES)?;
            let key = Key::new(u32::from(net.prefix_len()), net.network().octets());
            let written = if insert {
                trie.insert(&key, slot.value, 0)
            } else {
                trie.remove(&key)
            };
            (MAP_V6_RANGES, written)
        }
    };
    if insert {
        written.map_err(map_err(map))
    } else {
        removed(map, written)
    }
}

/// A delete of `map`'s: a key already gone is not an error (aya reports a
/// hash map's as `KeyNotFound`, an LPM trie's as the syscall's ENOENT).
fn removed(map: &'static str, deleted: Result<(), MapError>) -> Result<(), DatapathError> {
    match deleted {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(map_err(map)(e)),
    }
}

/// A reused id or dense span may hold counts of a range removed earlier.
fn zero_counters(maps: &mut Maps, added: &[&RangeSlot]) -> Result<(), DatapathError> {
    let cpus = possible_cpus()?;
    for slot in added {
        let id = slot.value.range_id;
        maps.tables_mut().ranges.zero(id);
        // The per-CPU maps of layouts 14 and older: frozen with their counts
        // on a datapath upgraded from one, one entry long on a new one.
        zero_frozen_per_cpu::<RangeStats>(maps, MAP_RANGE_STATS, id, cpus)?;
        zero_frozen_per_cpu::<u64>(maps, MAP_DELIVERED, id, cpus)?;
        zero_frozen_per_cpu::<RangePressure>(maps, MAP_PRESSURE, id, cpus)?;
        for index in slot.value.dense_base..slot.value.dense_base + slot.dense_len {
            maps.tables_mut().dense.zero(index);
        }
    }
    Ok(())
}

/// How many CPUs a per-CPU map holds a value for (read from sysfs: once per sync).
/// Namespace inodes are 32-bit (`ns_common.inum`).
fn netns_inode() -> u32 {
    u32::try_from(crate::netns::current().0).expect("namespace inodes fit in 32 bits")
}

fn possible_cpus() -> Result<usize, DatapathError> {
    aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))
}

/// Zeroes entry `index` of a per-CPU array on each of `cpus` CPUs.
fn zero_per_cpu<V: aya::Pod + Default>(
    maps: &mut Maps,
    map: &'static str,
    index: u32,
    cpus: usize,
) -> Result<(), DatapathError> {
    let zeros = PerCpuValues::try_from((0..cpus).map(|_| V::default()).collect::<Vec<_>>())
        .map_err(DatapathError::Cpus)?;
    let mut array: PerCpuArray<_, V> = maps.typed_mut(map)?;
    array.set(index, zeros, 0).map_err(map_err(map))
}

/// As [`zero_per_cpu`], for an entry the map may be too short to hold.
fn zero_frozen_per_cpu<V: aya::Pod + Default>(
    maps: &mut Maps,
    map: &'static str,
    index: u32,
    cpus: usize,
) -> Result<(), DatapathError> {
    let array: PerCpuArray<_, V> = maps.typed(map)?;
    if index >= array.len() {
        return Ok(());
    }
    zero_per_cpu::<V>(maps, map, index, cpus)
}

/// Steer entries: new and changed keys first (a new entry's index starts with
/// no counts, in total or per VIP), then keys that went away. Their sockets are
/// the steer agent's.
fn sync_steer(maps: &mut Maps, old: Option<&Layout>, new: &Layout) -> Result<(), DatapathError> {
    let old_steers: &[SteerSlot] = old.map_or(&[], |l| &l.steers);
    let cpus = possible_cpus()?;
    let unchanged = |slot: &SteerSlot| {
        old_steers
            .iter()
            .find(|o| o.key() == slot.key())
            .is_some_and(|o| o.entry == slot.entry)
    };
    let mut fresh_entries = Vec::new();
    for slot in new.steers.iter().filter(|slot| !unchanged(slot)) {
        if !old_steers.iter().any(|o| o.entry == slot.entry) {
            zero_per_cpu::<u64>(maps, MAP_STEER_STATS, slot.entry, cpus)?;
            fresh_entries.push(slot.entry);
        }
    }
    forget_steered_vips(maps, &fresh_entries)?;
    for slot in new.steers.iter().filter(|slot| !unchanged(slot)) {
        let mut steer: HashMap<_, SteerKey, SteerValue> = maps.typed_mut(MAP_STEER)?;
        steer
            .insert(slot.key(), SteerValue { entry: slot.entry }, 0)
            .map_err(map_err(MAP_STEER))?;
    }
    let mut steer: HashMap<_, SteerKey, SteerValue> = maps.typed_mut(MAP_STEER)?;
    for slot in old_steers {
        if !new.steers.iter().any(|n| n.key() == slot.key()) {
            removed(MAP_STEER, steer.remove(&slot.key()))?;
        }
    }
    Ok(())
}

/// Removes the per-VIP steered counts earlier entries left at `entries`,
/// from one batch read of the keys (aya's walk takes a syscall a key).
fn forget_steered_vips(maps: &mut Maps, entries: &[u32]) -> Result<(), DatapathError> {
    if entries.is_empty() {
        return Ok(());
    }
    let map = maps.map(MAP_STEERED_VIPS).ok_or(DatapathError::Missing {
        kind: "map",
        name: MAP_STEERED_VIPS,
    })?;
    let stale: Vec<SteeredVip> = batch::per_cpu_hash::<SteeredVip, u64>(map, MAP_STEERED_VIPS)
        .map_err(MapsError::from)?
        .iter()
        .map(|(key, _)| key)
        .filter(|key| entries.contains(&key.entry))
        .collect();
    let mut vips: PerCpuHashMap<_, SteeredVip, u64> = maps.typed_mut(MAP_STEERED_VIPS)?;
    for key in stale {
        removed(MAP_STEERED_VIPS, vips.remove(&key))?;
    }
    Ok(())
}

/// Writes every decapsulating interface of `layout` into a fresh
/// `MAP_DECAP` (one an adopting start creates for a new set of interfaces).
pub(super) fn fill_decap(maps: &mut Maps, layout: &Layout) -> Result<(), DatapathError> {
    sync_decap(maps, None, layout)
}

/// Entries of interfaces that decapsulate, then those of interfaces that no
/// longer do. An interface that has gone away
/// took its ifindex with it: nothing to remove.
fn sync_decap(maps: &mut Maps, old: Option<&Layout>, new: &Layout) -> Result<(), DatapathError> {
    let old_decap: &[DecapEntry] = old.map_or(&[], |l| &l.decap);
    if old.is_some() && old_decap == new.decap.as_slice() {
        return Ok(());
    }
    let ifindex = |name: &str| nix::net::if_::if_nametoindex(name).ok();
    for entry in &new.decap {
        // One that is gone gets its entry when it is back (`move_decap`).
        if let Some(index) = ifindex(&entry.interface) {
            set_decap(maps, &entry.interface, index, entry.value())?;
        }
    }
    for entry in old_decap {
        if new.decap.iter().any(|n| n.interface == entry.interface) {
            continue;
        }
        if let Some(index) = ifindex(&entry.interface) {
            set_decap(maps, &entry.interface, index, DecapConfig::default())?;
        }
    }
    Ok(())
}

/// `interface`'s decapsulation entry, if `layout` has one, moved from
/// ifindex `from` to `to`: the interface was deleted and created again.
/// False when `MAP_DECAP` has no entry for `to`: it must be made afresh,
/// sized for the new ifindex.
pub(super) fn move_decap(
    maps: &mut Maps,
    layout: &Layout,
    interface: &str,
    from: u32,
    to: u32,
) -> Result<bool, DatapathError> {
    let Some(entry) = layout.decap.iter().find(|e| e.interface == interface) else {
        return Ok(true);
    };
    set_decap(maps, interface, from, DecapConfig::default())?;
    try_set_decap(maps, to, entry.value())
}

/// `MAP_DECAP` is sized for the interfaces the datapath attached to when it
/// was set up (or last adopted): an interface beyond it is one a reload
/// added, which the datapath is not attached to until vip restarts, or one
/// of an earlier layout in a chain of unfinished moves, which the datapath
/// is not attached to any more, or one created again with a higher ifindex.
fn set_decap(
    maps: &mut Maps,
    interface: &str,
    index: u32,
    value: DecapConfig,
) -> Result<(), DatapathError> {
    if !try_set_decap(maps, index, value)? {
        log::warn!("{interface}: its decapsulation takes effect when vip restarts (MAP_DECAP, sized when the datapath was set up, has no entry for its ifindex {index})");
    }
    Ok(())
}

/// Sets the `MAP_DECAP` entry of ifindex `index`; false when the map has
/// no entry for it.
fn try_set_decap(maps: &mut Maps, index: u32, value: DecapConfig) -> Result<bool, DatapathError> {
    match set(maps, MAP_DECAP, index, value) {
        Err(DatapathError::Map {
            source: MapError::OutOfBounds { .. },
            ..
        }) => Ok(false),
        result => result.map(|()| true),
    }
}

/// Level-2 entries (and their /24 entries) that gain or change a value first,
/// then level 1, then what goes away in the reverse order. Blocks of /16s that
/// stay do not move.
fn sync_index(maps: &mut Maps, old: Option<&Layout>, new: &Layout) -> Result<(), DatapathError> {
    let (old_l1, old_l2): (&[(u32, u32)], &[u32]) =
        old.map_or((&[], &[]), |l| (&l.v4_index.l1, &l.v4_index.l2));
    let (new_l1, new_l2) = (&new.v4_index.l1, &new.v4_index.l2);
    let (old_24s, new_24s) = (old.map_or_else(Vec::new, Layout::slash24s), new.slash24s());
    let old_at = |i: usize| old_l2.get(i).copied().unwrap_or(0);
    let new_at = |i: usize| new_l2.get(i).copied().unwrap_or(0);
    let old_24 = |i: usize| old_24s.get(i).copied().unwrap_or_default();
    let new_24 = |i: usize| new_24s.get(i).copied().unwrap_or_default();
    let len = old_l2.len().max(new_l2.len());
    for i in (0..len).filter(|&i| new_at(i) != 0) {
        for entry in slash24_writes(old_24(i), new_24(i)) {
            set(maps, MAP_V4_SLASH24, i as u32, entry)?;
        }
        if new_at(i) != old_at(i) {
            set(maps, MAP_V4_L2, i as u32, new_at(i))?;
        }
    }
    for entry in new_l1.iter().filter(|e| !old_l1.contains(e)) {
        set(maps, MAP_V4_L1, entry.0, entry.1)?;
    }
    for entry in old_l1.iter().filter(|e| !new_l1.iter().any(|n| n.0 == e.0)) {
        set(maps, MAP_V4_L1, entry.0, 0u32)?;
    }
    for i in (0..len).filter(|&i| new_at(i) == 0 && old_at(i) != 0) {
        set(maps, MAP_V4_L2, i as u32, 0u32)?;
        for entry in slash24_writes(old_24(i), V4Slash24::default()) {
            set(maps, MAP_V4_SLASH24, i as u32, entry)?;
        }
    }
    Ok(())
}

/// Entries of `MAP_V6_BLOCKS` that gain or change a value, each through the
/// steps of [`block_writes`], so that no lookup takes a half-written entry
/// for its block. A packet to a dense range whose block is not (yet, or any
/// more) in the table, or whose entry says "ask the trie", finds the range in
/// the trie and counts in the same dense slot. Sparse ranges' entries are
/// left to [`write_v6_ranges`].
fn sync_v6_blocks(
    maps: &mut Maps,
    old: Option<&Layout>,
    new: &Layout,
) -> Result<(), DatapathError> {
    write_v6_entries(maps, old, new, |value| value.state != V6_BLOCK_RANGE)
}

/// The entries of `new` that `which` picks, written as [`sync_v6_blocks`] says.
fn write_v6_entries(
    maps: &mut Maps,
    old: Option<&Layout>,
    new: &Layout,
    which: impl Fn(&V6Block) -> bool,
) -> Result<(), DatapathError> {
    let old_entries = v6_entries(old);
    for (entry, value) in new.v6_blocks().into_iter().filter(|(_, v)| which(v)) {
        let before = old_entries.get(&entry).copied().unwrap_or_default();
        for step in block_writes(before, value) {
            set(maps, MAP_V6_BLOCKS, entry, step)?;
        }
    }
    Ok(())
}

/// What `MAP_V6_BLOCKS` holds by entry under `layout`.
fn v6_entries(layout: Option<&Layout>) -> BTreeMap<u32, V6Block> {
    layout
        .map(Layout::v6_blocks)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Marks removed, contents kept, each sparse range's entry by its /64 that
/// `new` does not keep as it is: before a range added inside its /64 is
/// findable, a packet to that range must not take the entry. (A range's
/// entry validates its epoch, but a range added beside it leaves that alone.)
fn retire_v6_ranges(
    maps: &mut Maps,
    old: Option<&Layout>,
    new: &Layout,
) -> Result<(), DatapathError> {
    let new_entries = v6_entries(Some(new));
    for (entry, before) in v6_entries(old) {
        if before.state == V6_BLOCK_RANGE && new_entries.get(&entry) != Some(&before) {
            let retired = V6Block {
                state: V6_BLOCK_REMOVED,
                ..before
            };
            set(maps, MAP_V6_BLOCKS, entry, retired)?;
        }
    }
    Ok(())
}

/// The sparse ranges' entries by their /64 that `new` adds (see
/// [`retire_v6_ranges`] for those it drops): written once every other entry
/// is, so that a range's entry that says its declared VIPs all have entries
/// (`V6_RANGE_DECLARED_COMPLETE`) is never read before they are.
fn write_v6_ranges(
    maps: &mut Maps,
    old: Option<&Layout>,
    new: &Layout,
) -> Result<(), DatapathError> {
    write_v6_entries(maps, old, new, |value| value.state == V6_BLOCK_RANGE)
}

/// Into a `MAP_V4_SLASH24` an upgrade has just created: the entries of `old`,
/// the layout the index's other maps hold, so that [`sync`] moves all of them
/// to the new one together.
pub(super) fn fill_slash24s(maps: &mut Maps, old: &Layout) -> Result<(), DatapathError> {
    for (i, entry) in old.slash24s().into_iter().enumerate() {
        if entry.range_slot != 0 {
            set(maps, MAP_V4_SLASH24, i as u32, entry)?;
        }
    }
    Ok(())
}
