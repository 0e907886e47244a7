//! Whole-map batch reads (`vip_userspace::datapath::batch`), which `vip stats`
//! and `/metrics` read the range metadata and the per-range maps of layouts 14
//! and older with, against aya's lookups of one entry at a time, on a loaded
//! datapath.

use aya::maps::{Array, PerCpuArray, PerCpuValues};
use vip_common::{
    RangeMeta, RangeStats, MAP_DECLARED, MAP_DELIVERED, MAP_GLOBAL_STATS, MAP_RANGE_META,
};
use vip_tests::{fixture, root::require_root};
use vip_userspace::datapath::batch::{self, BatchError};

const CONFIG: &str = r#"
interfaces = ["lo"]

[[range]]
name = "web"
cidr = "192.0.2.0/24"

[[range]]
name = "v6"
cidr = "2001:db8::/64"
"#;

/// Every CPU's value of every key, each distinct, reads back in place.
#[test]
fn a_per_cpu_array_reads_whole_with_each_cpu_in_place() {
    if !require_root("a_per_cpu_array_reads_whole_with_each_cpu_in_place") {
        return;
    }
    let mut datapath = fixture::load(CONFIG);
    let cpus = aya::util::nr_cpus().unwrap();
    let value = |key: u32, cpu: usize| u64::from(key) * 1000 + cpu as u64 + 1;
    let entries = {
        let map = datapath.maps_mut().map_mut(MAP_GLOBAL_STATS).unwrap();
        let mut globals: PerCpuArray<_, u64> = PerCpuArray::try_from(map).unwrap();
        for key in 0..globals.len() {
            let values =
                PerCpuValues::try_from((0..cpus).map(|cpu| value(key, cpu)).collect::<Vec<_>>())
                    .unwrap();
            globals.set(key, values, 0).unwrap();
        }
        globals.len()
    };
    assert!(entries >= 2, "{entries} entries");
    let map = datapath.maps().map(MAP_GLOBAL_STATS).unwrap();
    let rows = batch::per_cpu_array::<u64>(map, MAP_GLOBAL_STATS).unwrap();
    assert_eq!(rows.len(), entries as usize);
    for key in 0..entries {
        let expected: Vec<u64> = (0..cpus).map(|cpu| value(key, cpu)).collect();
        assert_eq!(rows.get(key).unwrap(), expected.as_slice(), "key {key}");
    }
    assert_eq!(rows.get(entries), None);
}

/// The range metadata, read whole, is what a lookup per key reads.
#[test]
fn a_plain_array_reads_whole_as_entry_by_entry() {
    if !require_root("a_plain_array_reads_whole_as_entry_by_entry") {
        return;
    }
    let datapath = fixture::load(CONFIG);
    let map = datapath.maps().map(MAP_RANGE_META).unwrap();
    let rows = batch::array::<RangeMeta>(map, MAP_RANGE_META).unwrap();
    let metas: Array<_, RangeMeta> = Array::try_from(map).unwrap();
    assert_eq!(rows.len(), metas.len() as usize);
    for key in 0..metas.len() {
        assert_eq!(rows.get(key).unwrap(), [metas.get(&key, 0).unwrap()]);
    }
    let named = |key: u32| rows.get(key).unwrap()[0].name[..3].to_vec();
    assert_eq!((named(0), named(1)), (b"web".to_vec(), b"v6\0".to_vec()));
}

#[test]
fn a_map_of_another_kind_or_value_size_is_refused() {
    if !require_root("a_map_of_another_kind_or_value_size_is_refused") {
        return;
    }
    let datapath = fixture::load(CONFIG);
    let declared = datapath.maps().map(MAP_DECLARED).unwrap();
    assert!(matches!(
        batch::array::<u64>(declared, MAP_DECLARED),
        Err(BatchError::Kind {
            map: MAP_DECLARED,
            ..
        })
    ));
    let delivered = datapath.maps().map(MAP_DELIVERED).unwrap();
    assert!(matches!(
        batch::per_cpu_array::<RangeStats>(delivered, MAP_DELIVERED),
        Err(BatchError::ValueSize {
            map: MAP_DELIVERED,
            size: 8,
            expected: 32
        })
    ));
}
