//! The datapath's maps, wherever they come from: the object this process
//! loaded, or the pins of a datapath an earlier `vip run` left attached.

use std::{collections::HashMap, path::Path};

use aya::{maps::Map, Ebpf};
use vip_common::PINNED_MAPS;

use super::pin::{self, PinError};

pub enum DatapathMaps {
    Loaded(Ebpf),
    Pinned(HashMap<&'static str, Map>),
}

impl DatapathMaps {
    /// Opens every map a complete pin directory holds.
    pub fn open_pinned(dir: &Path) -> Result<DatapathMaps, PinError> {
        let maps = PINNED_MAPS
            .iter()
            .map(|&name| Ok((name, pin::open(dir, name)?)))
            .collect::<Result<HashMap<_, _>, PinError>>()?;
        Ok(DatapathMaps::Pinned(maps))
    }

    pub fn map(&self, name: &str) -> Option<&Map> {
        match self {
            DatapathMaps::Loaded(ebpf) => ebpf.map(name),
            DatapathMaps::Pinned(maps) => maps.get(name),
        }
    }

    pub fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        match self {
            DatapathMaps::Loaded(ebpf) => ebpf.map_mut(name),
            DatapathMaps::Pinned(maps) => maps.get_mut(name),
        }
    }
}
