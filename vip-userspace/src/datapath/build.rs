//! Which build's programs a datapath runs: the object's build id (its
//! `BUILD_SECTION`), recorded in `MAP_INFO` when the programs are attached or
//! replaced, with the number of in-place upgrades (replacements by another
//! build).

use aya::maps::Array;
use object::{Object, ObjectSection};
use vip_common::{DatapathInfo, BUILD_ID_LEN, BUILD_SECTION, MAP_INFO};

use super::{maps::Maps, DatapathError};

/// The build id of a datapath object (`unknown` when it has none).
pub fn of_object(object: &[u8]) -> String {
    object::File::parse(object)
        .ok()
        .and_then(|file| {
            let section = file.section_by_name(BUILD_SECTION)?;
            section.data().ok().map(text)
        })
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// NUL-padded ASCII as a string.
pub fn text(bytes: &[u8]) -> String {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

/// The datapath's record, if the maps have one (layout 6 on).
pub fn info(maps: &Maps) -> Option<DatapathInfo> {
    let array: Array<_, DatapathInfo> = maps.map(MAP_INFO)?.try_into().ok()?;
    array.get(&0, 0).ok().filter(|info| info.build[0] != 0)
}

/// Records that `object`'s programs run, after `upgrades` in-place upgrades
/// (replacements by another build).
pub(super) fn record(maps: &mut Maps, object: &[u8], upgrades: u32) -> Result<(), DatapathError> {
    let mut info: DatapathInfo = bytemuck::Zeroable::zeroed();
    let id = of_object(object);
    let len = id.len().min(BUILD_ID_LEN - 1);
    info.build[..len].copy_from_slice(&id.as_bytes()[..len]);
    info.upgrades = upgrades;
    let mut array: Array<_, DatapathInfo> = maps.typed_mut(MAP_INFO)?;
    array.set(0, info, 0).map_err(|source| DatapathError::Map {
        map: MAP_INFO,
        source,
    })
}
