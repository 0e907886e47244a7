//! The datapath's maps, wherever they come from: the object this process
//! loaded, or the pins of a datapath a daemon left attached. The daemon, the
//! adoption and `vip stats` all hold them as this one type.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, Map, MapError},
    Ebpf,
};
use vip_common::{LAYOUT_VERSION, MAP_SETTINGS, PINNED_MAPS, SETTING_LAYOUT_VERSION};

use crate::errors::Blame;

use super::{
    cpu_table::{CounterTables, CpuTableError},
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
}

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("the eBPF object has no map {name:?}")]
    Missing { name: &'static str },
    #[error("the datapath pinned in {} has layout version {}, this vip has {LAYOUT_VERSION}: run `vip down`, then start again", dir.display(), found.map_or("none".to_string(), |v| v.to_string()))]
    Version { dir: PathBuf, found: Option<u32> },
    #[error(transparent)]
    CpuTable(#[from] CpuTableError),
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
        let maps = PINNED_MAPS
            .iter()
            .map(|&name| Ok((name, pin::open(dir, name)?)))
            .collect::<Result<HashMap<_, _>, PinError>>()?;
        let found = layout_version(&maps);
        if found != Some(LAYOUT_VERSION) {
            return Err(MapsError::Version {
                dir: dir.to_path_buf(),
                found,
            });
        }
        Maps::with_tables(maps, access)
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
        Ok(Maps { maps, tables })
    }

    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.get(name)
    }

    pub fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        self.maps.get_mut(name)
    }

    /// The per-VIP counter tables, mapped.
    pub fn tables(&self) -> &CounterTables {
        &self.tables
    }

    pub(super) fn tables_mut(&mut self) -> &mut CounterTables {
        &mut self.tables
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

fn layout_version(maps: &HashMap<&'static str, Map>) -> Option<u32> {
    let settings: Array<_, u32> = maps.get(MAP_SETTINGS)?.try_into().ok()?;
    settings.get(&SETTING_LAYOUT_VERSION, 0).ok()
}

impl Blame for MapsError {
    fn is_user_error(&self) -> bool {
        match self {
            MapsError::Pin(e) => e.is_user_error(),
            MapsError::Version { .. } => true,
            MapsError::Missing { .. } | MapsError::CpuTable(_) => false,
        }
    }
}
