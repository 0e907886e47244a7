//! Sums over the CPU tables, whose every slot has one copy per possible CPU: a
//! host with 128 CPUs holds 128 copies of each VIP's counters. Each CPU's
//! stretch is walked once, a block at a time in memory order, and a copy
//! costs an addition rather than a search, so that a read grows gently with
//! the CPU count.

use std::collections::HashMap;

use vip_common::{sparse_tag_idle, RangeCounts, Verdicts, VipAddr, SPARSE_PROBES};

use crate::datapath::cpu_table::{CpuTable, DenseTable, SparseTable};

/// The totals over every CPU of the dense slots `base..base + len`.
pub fn dense_slots(dense: &DenseTable, base: u32, len: u32) -> Vec<Verdicts> {
    let mut sums = vec![Verdicts::default(); len as usize];
    for cpu in 0..dense.cpus() {
        for (slot, sum) in (base..).zip(sums.iter_mut()) {
            sum.merge(&dense.get(cpu, slot));
        }
    }
    sums
}

/// The totals over every CPU of the per-range rows of range ids `ids`, in
/// that order: each CPU's stretch walked as it lies in memory, by several
/// threads on a host with many CPUs (10,000 ranges are 1.2 MiB a CPU).
pub fn range_rows(table: &CpuTable<RangeCounts>, ids: &[u32]) -> Vec<RangeCounts> {
    let parts = by_readers(table.cpus(), |cpus| {
        let mut sums = vec![RangeCounts::default(); ids.len()];
        for cpu in cpus {
            for (&id, sum) in ids.iter().zip(sums.iter_mut()) {
                sum.merge(&table.get(cpu, id));
            }
        }
        sums
    });
    let mut parts = parts.into_iter();
    let mut sums = parts.next().expect("at least one reader");
    for part in parts {
        for (sum, add) in sums.iter_mut().zip(&part) {
            sum.merge(add);
        }
    }
    sums
}

/// The configured ranges by id: a slot counts for the range whose id and
/// epoch it recorded, if that range is still configured.
pub struct LiveRanges {
    /// By range id: the epoch and the range's index in the report plus one
    /// (0: no range has the id).
    by_id: Vec<(u32, u32)>,
}

impl LiveRanges {
    /// From each range's id and epoch, in report order.
    pub fn new(ranges: impl Iterator<Item = (u32, u32)>) -> LiveRanges {
        let mut by_id = Vec::new();
        for (index, (id, epoch)) in ranges.enumerate() {
            let id = id as usize;
            if by_id.len() <= id {
                by_id.resize(id + 1, (0, 0));
            }
            by_id[id] = (epoch, index as u32 + 1);
        }
        LiveRanges { by_id }
    }

    /// The report index of the range a slot recorded, if it is configured.
    pub fn index(&self, range_id: u32, epoch: u32) -> Option<usize> {
        match self.by_id.get(range_id as usize) {
            Some(&(live, index)) if index != 0 && live == epoch => Some(index as usize - 1),
            _ => None,
        }
    }
}

/// One slot index's running total: the VIP the first CPU to hold the index
/// held there. Every CPU hashes a VIP to the same start, so most CPUs hold it
/// at the same index, and every copy lies within [`SPARSE_PROBES`] slots of
/// that start. Zeroed memory is a table of empty cells, which the kernel
/// hands out without a pass over it.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Zeroable)]
struct Cell {
    /// The range's report index plus one; 0 for an empty cell.
    key: u32,
    _pad: u32,
    vip: VipAddr,
    verdicts: Verdicts,
}

/// Copies of a VIP that found its cell taken by another VIP and none of its
/// own near it: where one was (`None` for the frozen table, whose slots lie
/// by another hash), and their counts.
#[derive(Default)]
struct Spill {
    index: Option<u32>,
    verdicts: Verdicts,
}

/// Keyed by the VIP's range (report index) and address.
type ByVip<V> = HashMap<(usize, VipAddr), V, foldhash::fast::RandomState>;

/// The per-VIP totals of the sparse table over every CPU.
pub struct SparseSum {
    cells: Vec<Cell>,
    spilled: ByVip<Spill>,
}

impl SparseSum {
    /// For a table of `stride` slots per CPU.
    pub fn new(stride: u32) -> SparseSum {
        SparseSum {
            cells: bytemuck::zeroed_vec(stride as usize),
            spilled: ByVip::default(),
        }
    }

    /// One CPU's copy of slot `index`: `vip` of the range at report index
    /// `range`, with its counts.
    pub fn add(&mut self, index: u32, range: usize, vip: VipAddr, verdicts: &Verdicts) {
        let key = range as u32 + 1;
        let at = index as usize;
        if let Some(found) = self.cell_of(at, key, &vip) {
            self.cells[found].verdicts.merge(verdicts);
        } else if self.cells[at].key == 0 {
            self.cells[at] = Cell {
                key,
                _pad: 0,
                vip,
                verdicts: *verdicts,
            };
        } else {
            let spill = self.spilled.entry((range, vip)).or_default();
            spill.index.get_or_insert(index);
            spill.verdicts.merge(verdicts);
        }
    }

    /// Counts of `vip` in the frozen table of an upgraded datapath.
    pub fn add_frozen(&mut self, range: usize, vip: VipAddr, verdicts: &Verdicts) {
        self.spilled
            .entry((range, vip))
            .or_default()
            .verdicts
            .merge(verdicts);
    }

    /// Adds what another walk (of other CPUs) summed.
    pub fn merge(&mut self, other: SparseSum) {
        for (index, cell) in (0..).zip(&other.cells) {
            if cell.key != 0 {
                self.add(index, cell.key as usize - 1, cell.vip, &cell.verdicts);
            }
        }
        for ((range, vip), spill) in other.spilled {
            match spill.index {
                Some(index) => self.add(index, range, vip, &spill.verdicts),
                None => self.add_frozen(range, vip, &spill.verdicts),
            }
        }
    }

    /// The cell that holds `vip` of range `key`: `at`, or one within
    /// [`SPARSE_PROBES`] slots of it either way (around the table's end).
    fn cell_of(&self, at: usize, key: u32, vip: &VipAddr) -> Option<usize> {
        let holds = |i: usize| self.cells[i].key == key && self.cells[i].vip == *vip;
        if holds(at) {
            return Some(at);
        }
        let len = self.cells.len();
        let reach = (SPARSE_PROBES as usize - 1).min(len / 2);
        // No division: this runs for most slots of the first CPU walked.
        (1..=reach)
            .flat_map(|d| {
                let after = if at + d >= len { at + d - len } else { at + d };
                let before = if at >= d { at - d } else { at + len - d };
                [after, before]
            })
            .find(|&i| holds(i))
    }

    /// Each VIP once, with its range's report index and its totals, in no
    /// particular order.
    pub fn totals(mut self) -> impl Iterator<Item = (usize, VipAddr, Verdicts)> {
        let mut alone = Vec::new();
        let mut frozen: Vec<((usize, VipAddr), Verdicts)> = Vec::new();
        for ((range, vip), spill) in std::mem::take(&mut self.spilled) {
            let found = spill
                .index
                .and_then(|index| self.cell_of(index as usize, range as u32 + 1, &vip));
            match (found, spill.index) {
                (Some(at), _) => self.cells[at].verdicts.merge(&spill.verdicts),
                (None, Some(_)) => alone.push((range, vip, spill.verdicts)),
                (None, None) => frozen.push(((range, vip), spill.verdicts)),
            }
        }
        if !frozen.is_empty() {
            let by_vip: ByVip<usize> = (0..self.cells.len())
                .filter(|&i| self.cells[i].key != 0)
                .map(|i| ((self.cells[i].key as usize - 1, self.cells[i].vip), i))
                .collect();
            for ((range, vip), verdicts) in frozen {
                match by_vip.get(&(range, vip)) {
                    Some(&at) => self.cells[at].verdicts.merge(&verdicts),
                    None => alone.push((range, vip, verdicts)),
                }
            }
        }
        self.cells
            .into_iter()
            .filter(|cell| cell.key != 0)
            .map(|cell| (cell.key as usize - 1, cell.vip, cell.verdicts))
            .chain(alone)
    }
}

/// What a walk of the sparse table found on each CPU.
pub struct SparseWalk {
    pub sum: SparseSum,
    /// By CPU: slots holding a VIP of a configured range, and how many of
    /// them are idle.
    pub used_per_cpu: Vec<u64>,
    pub idle_per_cpu: Vec<u64>,
    /// By CPU, then by range (report index): the slots the range holds.
    pub held: Vec<Vec<u32>>,
}

/// CPUs' stretches a reader thread walks at least, and the most threads a
/// read takes: a host with many CPUs holds one table stretch per CPU, and
/// one thread reads memory at a fraction of the host's bandwidth.
const CPUS_PER_READER: u32 = 8;
const MAX_READERS: usize = 8;
/// How far ahead of the slot it reads a walk asks for slots (measured on the
/// scrape bench: 16 to 96 gave about the same).
const PREFETCH_AHEAD: u32 = 48;
/// Slots a walk takes from every CPU before it moves on: 2,048 running
/// totals (112 KiB) stay in a core's second-level cache.
const BLOCK_SLOTS: u32 = 2048;

/// The threads a read of `cpus` CPUs' tables takes where it may run on
/// `available` CPUs.
pub fn reader_threads(cpus: u32, available: usize) -> usize {
    available
        .min(cpus.div_ceil(CPUS_PER_READER) as usize)
        .clamp(1, MAX_READERS)
}

/// `walk` of every CPU of a table of `cpus`, split in runs of consecutive
/// CPUs, one per reader thread ([`reader_threads`]); the parts in CPU order.
fn by_readers<R: Send>(cpus: u32, walk: impl Fn(std::ops::Range<u32>) -> R + Sync) -> Vec<R> {
    let available = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = reader_threads(cpus, available);
    let per_thread = cpus.div_ceil(threads as u32);
    let part = |first: u32| walk(first..(first + per_thread).min(cpus));
    if threads == 1 {
        return vec![part(0)];
    }
    std::thread::scope(|scope| {
        // A thread the host will not give (a tasks limit) walks its CPUs on
        // this one instead, after the others started.
        let walkers: Vec<_> = (0..threads as u32)
            .map(|t| {
                let first = t * per_thread;
                let part = &part;
                std::thread::Builder::new()
                    .name("vip-read".to_string())
                    .spawn_scoped(scope, move || part(first))
                    .map_err(|_| first)
            })
            .collect();
        walkers
            .into_iter()
            .map(|walker| match walker {
                Ok(thread) => thread.join().expect("a reader thread panicked"),
                Err(first) => part(first),
            })
            .collect()
    })
}

/// Walks every CPU's stretch of the sparse table, by several threads on a
/// host with many CPUs. `word` is the tag word in force, `ranges` the
/// number of configured ranges.
pub fn sparse_walk(
    sparse: &SparseTable,
    live: &LiveRanges,
    word: u32,
    ranges: usize,
) -> SparseWalk {
    let mut parts = by_readers(sparse.cpus(), |cpus| {
        walk_cpus(sparse, cpus, live, word, ranges)
    });
    let mut whole = parts.remove(0);
    for part in parts {
        whole.sum.merge(part.sum);
        whole.used_per_cpu.extend(part.used_per_cpu);
        whole.idle_per_cpu.extend(part.idle_per_cpu);
        whole.held.extend(part.held);
    }
    whole
}

/// Walks CPUs `cpus` a block of slots at a time, every CPU's copy of the
/// block before the next: the block's running totals stay in this core's
/// caches while the CPUs' copies stream past.
fn walk_cpus(
    sparse: &SparseTable,
    cpus: std::ops::Range<u32>,
    live: &LiveRanges,
    word: u32,
    ranges: usize,
) -> SparseWalk {
    let count = cpus.len();
    let mut walk = SparseWalk {
        sum: SparseSum::new(sparse.stride()),
        used_per_cpu: vec![0; count],
        idle_per_cpu: vec![0; count],
        held: vec![vec![0; ranges]; count],
    };
    let stride = sparse.stride();
    for block in (0..stride).step_by(BLOCK_SLOTS as usize) {
        let end = (block + BLOCK_SLOTS).min(stride);
        for (local, cpu) in cpus.clone().enumerate() {
            let held = &mut walk.held[local];
            let stretch = sparse.stretch(cpu);
            for index in block..end {
                stretch.prefetch(index + PREFETCH_AHEAD);
                let Some(row) = stretch.get(index) else {
                    continue;
                };
                let Some(range) = live.index(row.range_id, row.epoch) else {
                    continue;
                };
                walk.used_per_cpu[local] += 1;
                if sparse_tag_idle(word, row.tag) {
                    walk.idle_per_cpu[local] += 1;
                }
                held[range] += 1;
                walk.sum.add(index, range, row.vip, &row.verdicts);
            }
        }
    }
    walk
}

#[cfg(test)]
mod tests {
    use vip_common::Counter;

    use super::*;

    fn vip(last: u8) -> VipAddr {
        let mut addr_be = [0u8; 16];
        addr_be[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        addr_be[15] = last;
        VipAddr::from_v6_be(addr_be)
    }

    /// The totals by range, then address.
    fn sorted(sum: SparseSum) -> Vec<(usize, VipAddr, Verdicts)> {
        let mut totals: Vec<_> = sum.totals().collect();
        totals.sort_by_key(|&(range, vip, _)| (range, vip.addr_be));
        totals
    }

    fn packets(accepted: u64, dropped: u64) -> Verdicts {
        Verdicts {
            accepted: Counter {
                packets: accepted,
                bytes: accepted * 100,
            },
            dropped: Counter {
                packets: dropped,
                bytes: dropped * 100,
            },
        }
    }

    #[test]
    fn a_vip_is_summed_wherever_each_cpu_holds_it() {
        let mut sum = SparseSum::new(4);
        // CPU 0: VIP 1 at 0, VIP 2 at 1; CPU 1 met them the other way round,
        // and holds VIP 2 of another range at 2; CPU 2 as CPU 0.
        sum.add(0, 0, vip(1), &packets(1, 0));
        sum.add(1, 0, vip(2), &packets(2, 0));
        sum.add(0, 0, vip(2), &packets(0, 3));
        sum.add(1, 0, vip(1), &packets(4, 0));
        sum.add(2, 1, vip(2), &packets(5, 0));
        sum.add(0, 0, vip(1), &packets(6, 0));
        sum.add(1, 0, vip(2), &packets(7, 1));
        sum.add_frozen(0, vip(1), &packets(8, 0));
        let totals = sorted(sum);
        assert_eq!(
            totals,
            vec![
                (0, vip(1), packets(1 + 4 + 6 + 8, 0)),
                (0, vip(2), packets(2 + 7, 3 + 1)),
                (1, vip(2), packets(5, 0)),
            ]
        );
    }

    #[test]
    fn copies_near_the_table_end_find_their_cell_across_it() {
        let mut sum = SparseSum::new(16);
        sum.add(15, 0, vip(1), &packets(1, 0));
        // Another CPU held VIP 1 two probes on, past the end; a third held
        // VIP 2 at 15 and VIP 1 at 0.
        sum.add(1, 0, vip(1), &packets(2, 0));
        sum.add(15, 0, vip(2), &packets(4, 0));
        sum.add(0, 0, vip(1), &packets(8, 0));
        let totals = sorted(sum);
        assert_eq!(
            totals,
            vec![(0, vip(1), packets(11, 0)), (0, vip(2), packets(4, 0))]
        );
    }

    #[test]
    fn a_vip_spilled_before_it_had_a_cell_is_one_row() {
        let mut sum = SparseSum::new(64);
        sum.add(10, 0, vip(2), &packets(1, 0));
        // VIP 1 at 10 on this CPU, whose cell holds VIP 2: spilled.
        sum.add(10, 0, vip(1), &packets(2, 0));
        // Then a CPU that holds it at 11, a free cell.
        sum.add(11, 0, vip(1), &packets(4, 0));
        let totals = sorted(sum);
        assert_eq!(
            totals,
            vec![(0, vip(1), packets(6, 0)), (0, vip(2), packets(1, 0))]
        );
    }

    #[test]
    fn walks_of_other_cpus_merge_into_one_row_per_vip() {
        let mut first = SparseSum::new(64);
        first.add(20, 0, vip(1), &packets(1, 0));
        first.add(21, 0, vip(2), &packets(1, 0));
        first.add_frozen(1, vip(3), &packets(0, 7));
        let mut second = SparseSum::new(64);
        second.add(20, 0, vip(2), &packets(2, 0));
        second.add(21, 0, vip(1), &packets(2, 0));
        second.add(40, 1, vip(3), &packets(2, 0));
        // A VIP the second walk spilled (its cell held another VIP).
        second.add(40, 1, vip(4), &packets(0, 5));
        first.merge(second);
        let totals = sorted(first);
        assert_eq!(
            totals,
            vec![
                (0, vip(1), packets(3, 0)),
                (0, vip(2), packets(3, 0)),
                (1, vip(3), packets(2, 7)),
                (1, vip(4), packets(0, 5)),
            ]
        );
    }

    #[test]
    fn the_same_address_in_two_ranges_is_two_rows() {
        let mut sum = SparseSum::new(8);
        sum.add(3, 0, vip(1), &packets(1, 0));
        sum.add(3, 1, vip(1), &packets(2, 0));
        sum.add(4, 1, vip(1), &packets(4, 0));
        let totals = sorted(sum);
        assert_eq!(
            totals,
            vec![(0, vip(1), packets(1, 0)), (1, vip(1), packets(6, 0))]
        );
    }

    #[test]
    fn a_slot_counts_for_its_range_only_at_the_live_epoch() {
        let live = LiveRanges::new([(3, 10), (0, 7)].into_iter());
        assert_eq!(live.index(3, 10), Some(0));
        assert_eq!(live.index(0, 7), Some(1));
        assert_eq!(live.index(3, 9), None, "a range id reused by a reload");
        assert_eq!(live.index(1, 7), None, "an id no range holds");
        assert_eq!(live.index(400, 10), None, "an id beyond every range");
    }
}
