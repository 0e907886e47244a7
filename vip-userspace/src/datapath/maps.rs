//! The datapath's maps, wherever they come from: the object this process
//! loaded, or the pins of a datapath a daemon left attached. The daemon, the
//! adoption and `vip stats` all hold them as this one type.

use std::{
    borrow::Cow,
    collections::HashMap,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use aya::{
    maps::{Map, MapError},
    Ebpf,
};
use vip_common::{LAYOUT_VERSION, PINNED_MAPS};

use crate::errors::Blame;

use super::{
    batch::BatchError,
    cpu_table::{CounterTables, CpuPick, CpuTableError},
    frozen_ranges::FrozenRanges,
    pin::{self, PinError},
    DatapathError,
};

/// Whether the per-VIP counter tables are mapped for writing (the daemon zeroes
/// the slots of new ranges) or only for reading (`vip stats`, the exporter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Every map vip pins, by name, with the per-VIP counter tables mapped.
pub struct Maps {
    maps: HashMap<&'static str, Map>,
    tables: CounterTables,
    /// Read once, for maps opened from pins (see [`Maps::frozen_ranges`]).
    frozen_ranges: OnceLock<FrozenRanges>,
    /// Where they are pinned, when they were opened from pins.
    pin_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("the eBPF object has no map {name:?}")]
    Missing { name: &'static str },
    #[error("the datapath pinned in {} has layout version {}, this vip reads {LAYOUT_VERSION}: use the vip that runs it, or restart `vip run` with this one (it upgrades an older datapath in place)", dir.display(), found.map_or("none".to_string(), |v| v.to_string()))]
    Version { dir: PathBuf, found: Option<u32> },
    #[error(transparent)]
    CpuTable(#[from] CpuTableError),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

impl Maps {
    /// Opens every map of a complete pin directory; a directory without a
    /// complete datapath is [`PinError::NotRunning`], and one this vip cannot
    /// read (another layout version) [`MapsError::Version`].
    pub fn open_pinned(dir: &Path, access: Access) -> Result<Maps, MapsError> {
        if !pin::is_complete(dir) {
            return Err(PinError::NotRunning {
                dir: dir.to_path_buf(),
            }
            .into());
        }
        // Before opening maps an older or newer layout may not have.
        let found = pin::layout_version(dir);
        if found != Some(LAYOUT_VERSION) {
            return Err(MapsError::Version {
                dir: dir.to_path_buf(),
                found,
            });
        }
        let maps = PINNED_MAPS
            .iter()
            .map(|&name| Ok((name, pin::open(dir, name)?)))
            .collect::<Result<HashMap<_, _>, PinError>>()?;
        let mut maps = Maps::with_tables(maps, access)?;
        maps.pin_dir = Some(dir.to_path_buf());
        Ok(maps)
    }

    /// Takes the pinned set of maps out of a freshly loaded object (the
    /// programs keep referring to them).
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Maps, MapsError> {
        let maps = PINNED_MAPS
            .iter()
            .map(|&name| {
                Ok((
                    name,
                    ebpf.take_map(name).ok_or(MapsError::Missing { name })?,
                ))
            })
            .collect::<Result<HashMap<_, _>, MapsError>>()?;
        Maps::with_tables(maps, Access::ReadWrite)
    }

    fn with_tables(maps: HashMap<&'static str, Map>, access: Access) -> Result<Maps, MapsError> {
        let tables = CounterTables::open(|name| maps.get(name), access == Access::ReadWrite)?;
        Ok(Maps {
            maps,
            tables,
            frozen_ranges: OnceLock::new(),
            pin_dir: None,
        })
    }

    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.get(name)
    }

    pub fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        self.maps.get_mut(name)
    }

    /// The pin directory they were opened from, if they were.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// The per-VIP and per-range counter tables, mapped.
    pub fn tables(&self) -> &CounterTables {
        &self.tables
    }

    /// Reads from here on see the counter tables as a host with `cpus` CPUs
    /// holds them, CPU `c`'s counters copied from this host's CPU `pick(c)`
    /// (see [`CounterTables::emulated`]); for the scrape bench only: the
    /// datapath goes on counting in the real tables, which reads no longer see.
    pub fn emulate_cpus(&mut self, cpus: u32, pick: CpuPick) -> Result<(), MapsError> {
        self.tables = self.tables.emulated(cpus, pick)?;
        Ok(())
    }

    /// The per-range maps of layouts 14 and older, summed ([`FrozenRanges`];
    /// `live` is each configured range's id and epoch). Maps opened from
    /// pins belong to a datapath of this vip's layout, which an upgrade
    /// records only once every link runs its programs: nothing counts in
    /// those maps any more, so they are read once (on a host with many CPUs
    /// and ranges, a read copies one value per range and possible CPU) and
    /// kept. Those of a datapath loaded in this process are read each time.
    pub fn frozen_ranges(&self, live: &[(u32, u32)]) -> Result<Cow<'_, FrozenRanges>, MapsError> {
        if let Some(frozen) = self.frozen_ranges.get() {
            return Ok(Cow::Borrowed(frozen));
        }
        let map = |name| &self.maps[name];
        let frozen = FrozenRanges::read(map, live)?;
        if self.pin_dir.is_none() {
            return Ok(Cow::Owned(frozen));
        }
        Ok(Cow::Borrowed(self.frozen_ranges.get_or_init(|| frozen)))
    }

    pub(super) fn tables_mut(&mut self) -> &mut CounterTables {
        &mut self.tables
    }

    /// Map `name` as aya's typed map `T`, for reads.
    pub(super) fn typed<'a, T>(&'a self, name: &'static str) -> Result<T, DatapathError>
    where
        T: TryFrom<&'a Map, Error = MapError>,
    {
        let map = self
            .maps
            .get(name)
            .ok_or(DatapathError::Missing { kind: "map", name })?;
        T::try_from(map).map_err(|source| DatapathError::Map { map: name, source })
    }

    /// Map `name` as aya's typed map `T`, for updates.
    pub(super) fn typed_mut<'a, T>(&'a mut self, name: &'static str) -> Result<T, DatapathError>
    where
        T: TryFrom<&'a mut Map, Error = MapError>,
    {
        let map = self
            .maps
            .get_mut(name)
            .ok_or(DatapathError::Missing { kind: "map", name })?;
        T::try_from(map).map_err(|source| DatapathError::Map { map: name, source })
    }
}

impl Blame for MapsError {
    fn is_user_error(&self) -> bool {
        match self {
            MapsError::Pin(e) => e.is_user_error(),
            MapsError::Version { .. } => true,
            MapsError::Missing { .. } | MapsError::CpuTable(_) | MapsError::Batch(_) => false,
        }
    }
}
