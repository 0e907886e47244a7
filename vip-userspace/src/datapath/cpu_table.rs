//! The per-VIP and per-range counter maps as userspace sees them: a shared mapping of a CPU
//! table (see `vip_common::CPU_TABLE_MAP_FLAGS`), so that reading every slot of
//! every CPU is a memory walk rather than a syscall per slot.

use std::{
    marker::PhantomData,
    num::NonZeroUsize,
    os::fd::AsFd,
    ptr::{self, NonNull},
    sync::atomic::{fence, Ordering},
};

use aya::maps::{Map, MapError};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use vip_common::{
    Counter, RangeCounts, SparseCold, SparseHot, SparseSlot, Verdicts, VipAddr, CPU_TABLE_ALIGN,
    CPU_TABLE_MAP_FLAGS, MAP_DENSE_COUNTS, MAP_DENSE_STATS, MAP_RANGE_COUNTS, MAP_SPARSE_COLD,
    MAP_SPARSE_HOT, MAP_SPARSE_STATS,
};

#[derive(Debug, thiserror::Error)]
pub enum CpuTableError {
    #[error("map {map} is missing")]
    Missing { map: &'static str },
    #[error(
        "map {map} is not a CPU table: {what} (pinned by another vip version? run `vip down`)"
    )]
    Layout { map: &'static str, what: String },
    #[error("map {map}: {source}")]
    Info {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("mapping map {map} into memory: {source}")]
    Mmap {
        map: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("counting CPUs: {0}")]
    Cpus(#[source] std::io::Error),
}

/// A CPU table mapped into this process.
pub struct CpuTable<T> {
    base: NonNull<T>,
    mapped_len: usize,
    cpus: u32,
    stride: u32,
    writable: bool,
    _slot: PhantomData<T>,
}

// SAFETY: the mapping belongs to the process, not a thread; all access goes
// through volatile reads and writes of Pod slots.
unsafe impl<T: Send> Send for CpuTable<T> {}
unsafe impl<T: Sync> Sync for CpuTable<T> {}

impl<T: bytemuck::Pod> CpuTable<T> {
    /// Maps `map` read-only, or read-write to zero slots.
    pub fn open(map: &Map, name: &'static str, writable: bool) -> Result<Self, CpuTableError> {
        let layout = |what: String| CpuTableError::Layout { map: name, what };
        let Map::Array(data) = map else {
            return Err(layout("not a plain array".into()));
        };
        let info = data
            .info()
            .map_err(|source| CpuTableError::Info { map: name, source })?;
        if info.map_flags() & CPU_TABLE_MAP_FLAGS == 0 {
            return Err(layout("not mmapable".into()));
        }
        if info.value_size() as usize != size_of::<T>() {
            return Err(layout(format!(
                "{}-byte slots, this vip uses {}",
                info.value_size(),
                size_of::<T>()
            )));
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| CpuTableError::Cpus(e))? as u32;
        let entries = info.max_entries();
        if entries % cpus != 0 {
            return Err(layout(format!("{entries} slots for {cpus} CPUs")));
        }
        // The kernel rounds a larger page size up itself.
        let page = CPU_TABLE_ALIGN as usize;
        let mapped_len = (entries as usize * size_of::<T>()).div_ceil(page) * page;
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        let length = NonZeroUsize::new(mapped_len).ok_or_else(|| layout("empty".into()))?;
        // SAFETY: a fresh shared mapping of the map's fd, released in Drop; the
        // kernel keeps the map alive while it is mapped.
        let base = unsafe {
            mmap(
                None,
                length,
                prot,
                MapFlags::MAP_SHARED,
                data.fd().as_fd(),
                0,
            )
        }
        .map_err(|source| CpuTableError::Mmap { map: name, source })?;
        Ok(CpuTable {
            base: base.cast(),
            mapped_len,
            cpus,
            stride: entries / cpus,
            writable,
            _slot: PhantomData,
        })
    }

    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// Slots per CPU.
    pub fn stride(&self) -> u32 {
        self.stride
    }

    /// CPU `cpu`'s copy of slot `index`, as it is now (the datapath may be
    /// counting into it).
    #[inline]
    pub fn get(&self, cpu: u32, index: u32) -> T {
        // SAFETY: a live mapping of Pod slots (`slot` checks the bounds);
        // volatile as the kernel writes them concurrently.
        unsafe { ptr::read_volatile(self.slot(cpu, index)) }
    }

    /// Where CPU `cpu`'s copy of slot `index` is in the mapping.
    #[inline]
    fn slot(&self, cpu: u32, index: u32) -> *const T {
        assert!(
            cpu < self.cpus && index < self.stride,
            "slot out of the table"
        );
        let at = (cpu * self.stride + index) as usize;
        // SAFETY: in bounds (above) of the mapping.
        unsafe { self.base.as_ptr().add(at) }
    }

    /// Zeroes slot `index` on every CPU. Only for slots the datapath cannot
    /// reach at the moment (a range not yet inserted); needs a writable table.
    pub fn zero(&mut self, index: u32) {
        assert!(self.writable, "zeroing a read-only table");
        assert!(index < self.stride, "slot out of the table");
        for cpu in 0..self.cpus {
            let at = (cpu * self.stride + index) as usize;
            // SAFETY: as in `get`; the mapping is writable when `zero` is used.
            unsafe { ptr::write_volatile(self.base.as_ptr().add(at), T::zeroed()) }
        }
    }
}

/// Which of this host's CPUs an emulated CPU's stretch copies.
pub type CpuPick<'a> = &'a dyn Fn(u32) -> u32;

impl<T: bytemuck::Pod> CpuTable<T> {
    /// A read-only table of `cpus` stretches in this process's own memory,
    /// CPU `c`'s a copy of this table's stretch of CPU `pick(c)`: the counters
    /// as a host with `cpus` CPUs lays them out, for timing a read there (the
    /// scrape bench). The datapath never sees it.
    pub fn emulated(&self, cpus: u32, pick: CpuPick) -> Result<Self, CpuTableError> {
        let stretch = self.stride as usize;
        let slots = cpus as usize * stretch;
        let page = CPU_TABLE_ALIGN as usize;
        let mapped_len = (slots * size_of::<T>()).div_ceil(page).max(1) * page;
        let length = NonZeroUsize::new(mapped_len).expect("at least a page");
        // SAFETY: a fresh private anonymous mapping, released in Drop.
        let base = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .map_err(|source| CpuTableError::Mmap {
            map: "emulated",
            source,
        })?
        .cast::<T>();
        // Pages of the size the kernel maps a BPF map's memory with, so that
        // the walk meets as many page boundaries as on a real host.
        // SAFETY: the mapping just made.
        unsafe {
            nix::sys::mman::madvise(
                base.cast(),
                mapped_len,
                nix::sys::mman::MmapAdvise::MADV_NOHUGEPAGE,
            )
        }
        .map_err(|source| CpuTableError::Mmap {
            map: "emulated",
            source,
        })?;
        for cpu in 0..cpus {
            let from = pick(cpu);
            assert!(from < self.cpus, "CPU {from} is not in the table");
            // SAFETY: whole stretches, in bounds of both mappings (`slot`
            // checks the source's first slot; the destination holds `cpus`
            // stretches); the mappings do not overlap.
            unsafe {
                ptr::copy_nonoverlapping(
                    self.slot(from, 0),
                    base.as_ptr().add(cpu as usize * stretch),
                    stretch,
                )
            }
        }
        Ok(CpuTable {
            base,
            mapped_len,
            cpus,
            stride: self.stride,
            writable: false,
            _slot: PhantomData,
        })
    }
}

impl<T> Drop for CpuTable<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open` or `emulated`, unmapped once.
        let _ = unsafe { munmap(self.base.cast(), self.mapped_len) };
    }
}

/// The dense table of layout 14: each CPU's stretch of `MAP_DENSE_COUNTS` is
/// its accepted half, then its dropped half; a slot's [`Verdicts`] are the two
/// counters at the same index in each, plus what the table of layouts 13 and
/// older (`MAP_DENSE_STATS`) holds at that slot: frozen with the counts it held
/// on a datapath upgraded from one (dense slots keep their place across an
/// upgrade), one page per CPU and empty on a new one.
pub struct DenseTable {
    counts: CpuTable<Counter>,
    frozen: CpuTable<Verdicts>,
}

impl DenseTable {
    pub fn open<'a>(
        map: impl Fn(&'static str) -> Result<&'a Map, CpuTableError>,
        writable: bool,
    ) -> Result<DenseTable, CpuTableError> {
        let counts = CpuTable::open(map(MAP_DENSE_COUNTS)?, MAP_DENSE_COUNTS, writable)?;
        if counts.stride() % 2 != 0 {
            return Err(CpuTableError::Layout {
                map: MAP_DENSE_COUNTS,
                what: format!("{} slots per CPU, not two halves", counts.stride()),
            });
        }
        let frozen = CpuTable::open(map(MAP_DENSE_STATS)?, MAP_DENSE_STATS, writable)?;
        Ok(DenseTable { counts, frozen })
    }

    pub fn cpus(&self) -> u32 {
        self.counts.cpus()
    }

    /// As [`CpuTable::emulated`].
    pub fn emulated(&self, cpus: u32, pick: CpuPick) -> Result<DenseTable, CpuTableError> {
        Ok(DenseTable {
            counts: self.counts.emulated(cpus, pick)?,
            frozen: self.frozen.emulated(cpus, pick)?,
        })
    }

    /// Dense slots per CPU.
    pub fn stride(&self) -> u32 {
        self.counts.stride() / 2
    }

    /// CPU `cpu`'s counts of slot `index`, as they are now.
    pub fn get(&self, cpu: u32, index: u32) -> Verdicts {
        assert!(index < self.stride(), "slot out of the table");
        let mut verdicts = Verdicts {
            accepted: self.counts.get(cpu, index),
            dropped: self.counts.get(cpu, self.stride() + index),
        };
        if index < self.frozen.stride() {
            verdicts.merge(&self.frozen.get(cpu, index));
        }
        verdicts
    }

    /// Zeroes slot `index` on every CPU, in both tables; as [`CpuTable::zero`].
    pub fn zero(&mut self, index: u32) {
        assert!(index < self.stride(), "slot out of the table");
        let dropped = self.stride() + index;
        self.counts.zero(index);
        self.counts.zero(dropped);
        if index < self.frozen.stride() {
            self.frozen.zero(index);
        }
    }
}

/// One slot of the sparse table, its hot and cold halves read together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SparseRow {
    pub vip: VipAddr,
    /// Never 0 (a free slot has no row).
    pub tag: u32,
    /// `SparseHot::policy_id`.
    pub policy_id: u16,
    pub range_id: u32,
    pub epoch: u32,
    /// The VIP's counts, hot and cold.
    pub verdicts: Verdicts,
}

/// A datapath's rewrite of a slot takes nanoseconds; a sequence that stays
/// odd or moving this long is a bug, and the row is read as it is.
const SEQUENCE_RETRIES: u32 = 1 << 20;

/// The sparse table of layout 12: [`SparseHot`] and [`SparseCold`] at the
/// same index.
pub struct SparseTable {
    pub hot: CpuTable<SparseHot>,
    pub cold: CpuTable<SparseCold>,
}

impl SparseTable {
    pub fn cpus(&self) -> u32 {
        self.hot.cpus()
    }

    /// As [`CpuTable::emulated`].
    pub fn emulated(&self, cpus: u32, pick: CpuPick) -> Result<SparseTable, CpuTableError> {
        Ok(SparseTable {
            hot: self.hot.emulated(cpus, pick)?,
            cold: self.cold.emulated(cpus, pick)?,
        })
    }

    pub fn stride(&self) -> u32 {
        self.hot.stride()
    }

    /// CPU `cpu`'s slot `index`, or `None` when it is free (see
    /// [`SparseStretch::get`]).
    pub fn get(&self, cpu: u32, index: u32) -> Option<SparseRow> {
        self.stretch(cpu).get(index)
    }

    /// CPU `cpu`'s stretch of the table.
    pub fn stretch(&self, cpu: u32) -> SparseStretch<'_> {
        SparseStretch {
            hot: self.hot.slot(cpu, 0),
            cold: self.cold.slot(cpu, 0),
            len: self.stride(),
            _table: PhantomData,
        }
    }
}

/// One CPU's stretch of the sparse table: a walk of every slot reads it
/// without working out the CPU's place in the table for each slot.
pub struct SparseStretch<'a> {
    hot: *const SparseHot,
    cold: *const SparseCold,
    len: u32,
    _table: PhantomData<&'a SparseTable>,
}

impl SparseStretch<'_> {
    /// Slot `index`, or `None` when it is free. The datapath makes the cold
    /// half's sequence odd while it moves counts between the halves or takes
    /// the slot: a row read across such a move is read again.
    #[inline]
    pub fn get(&self, index: u32) -> Option<SparseRow> {
        assert!(index < self.len, "slot out of the table");
        // SAFETY: in bounds (above) of the stretch, in a live mapping; read
        // volatile as the datapath writes them concurrently.
        let (hot, cold) = unsafe { (self.hot.add(index as usize), self.cold.add(index as usize)) };
        // SAFETY: as above, for each read below.
        let tag = || unsafe { ptr::read_volatile(ptr::addr_of!((*hot).tag)) };
        let sequence = || unsafe { ptr::read_volatile(ptr::addr_of!((*cold).sequence)) };
        let halves = || unsafe { (ptr::read_volatile(hot), ptr::read_volatile(cold)) };
        // A free slot's cold half is not read: a slot being taken has no
        // counts yet, so reading it as free loses none.
        if tag() == 0 {
            return None;
        }
        for _ in 0..SEQUENCE_RETRIES {
            let before = sequence();
            fence(Ordering::Acquire);
            let (hot, cold) = halves();
            if hot.tag == 0 {
                return None;
            }
            fence(Ordering::Acquire);
            if before % 2 == 0 && sequence() == before {
                return Some(SparseRow::of(&hot, &cold));
            }
            std::hint::spin_loop();
        }
        let (hot, cold) = halves();
        (hot.tag != 0).then(|| SparseRow::of(&hot, &cold))
    }

    /// Asks the CPU to bring slot `index` into its caches (a no-op beyond
    /// the stretch, and on other architectures than x86-64). A walk of every
    /// slot goes about a sixth faster when it asks for the slots some way
    /// ahead: its hot and cold halves are two streams that cross a page
    /// every hundred slots or so.
    #[inline]
    pub fn prefetch(&self, index: u32) {
        if index >= self.len {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: a hint only, for addresses in the stretch; nothing is
            // read through them here.
            unsafe {
                _mm_prefetch(self.hot.add(index as usize).cast::<i8>(), _MM_HINT_T0);
                _mm_prefetch(self.cold.add(index as usize).cast::<i8>(), _MM_HINT_T0);
            }
        }
    }
}

impl SparseRow {
    fn of(hot: &SparseHot, cold: &SparseCold) -> SparseRow {
        SparseRow {
            vip: hot.vip,
            tag: hot.tag,
            policy_id: hot.policy_id,
            range_id: cold.range_id,
            epoch: cold.epoch,
            verdicts: cold.total(hot),
        }
    }
}

/// The per-VIP and per-range counter tables, mapped once and kept: mapping
/// one costs time in proportion to its size.
pub struct CounterTables {
    pub dense: DenseTable,
    pub sparse: SparseTable,
    /// The sparse table of layouts 11 and older (`MAP_SPARSE_STATS`): frozen
    /// with the counts it held on a datapath upgraded from one, one page per
    /// CPU and empty on a new one.
    pub frozen: CpuTable<SparseSlot>,
    /// The per-range counters (`MAP_RANGE_COUNTS`), a row per range id.
    pub ranges: CpuTable<RangeCounts>,
}

impl CounterTables {
    pub fn open<'a>(
        map: impl Fn(&'static str) -> Option<&'a Map>,
        writable: bool,
    ) -> Result<CounterTables, CpuTableError> {
        let open = |name| map(name).ok_or(CpuTableError::Missing { map: name });
        Ok(CounterTables {
            dense: DenseTable::open(open, writable)?,
            sparse: SparseTable {
                hot: CpuTable::open(open(MAP_SPARSE_HOT)?, MAP_SPARSE_HOT, false)?,
                cold: CpuTable::open(open(MAP_SPARSE_COLD)?, MAP_SPARSE_COLD, false)?,
            },
            frozen: CpuTable::open(open(MAP_SPARSE_STATS)?, MAP_SPARSE_STATS, false)?,
            ranges: CpuTable::open(open(MAP_RANGE_COUNTS)?, MAP_RANGE_COUNTS, writable)?,
        })
    }
}

impl CounterTables {
    /// As [`CpuTable::emulated`], every table.
    pub fn emulated(&self, cpus: u32, pick: CpuPick) -> Result<CounterTables, CpuTableError> {
        Ok(CounterTables {
            dense: self.dense.emulated(cpus, pick)?,
            sparse: self.sparse.emulated(cpus, pick)?,
            frozen: self.frozen.emulated(cpus, pick)?,
            ranges: self.ranges.emulated(cpus, pick)?,
        })
    }
}
