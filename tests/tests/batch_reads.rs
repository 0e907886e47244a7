//! Whole-map batch reads (`vip_userspace::datapath::batch`), which `vip stats`
//! and `/metrics` read the range metadata, the per-range maps of layouts 14
//! and older, the declared VIPs and the steered VIPs with, against aya's
//! lookups of one entry at a time, on a loaded datapath.

use std::{collections::HashMap, net::Ipv6Addr};

use aya::maps::{Array, HashMap as BpfHashMap, PerCpuArray, PerCpuHashMap, PerCpuValues};
use vip_common::{
    DeclaredVip, RangeMeta, RangeStats, SteeredVip, VipAddr, MAP_DECLARED, MAP_DELIVERED,
    MAP_GLOBAL_STATS, MAP_RANGE_META, MAP_STEERED_VIPS,
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
vips = ["2001:db8::7", "2001:db8::8", "2001:db8::1:0", "2001:db8:0:0:8000::9"]
"#;

const DECLARED: [&str; 4] = [
    "2001:db8::7",
    "2001:db8::8",
    "2001:db8::1:0",
    "2001:db8:0:0:8000::9",
];

/// The steered-VIP key of the `i`th address of 2001:db8:5::/64, for steer
/// entry `entry`.
fn steered(i: u32, entry: u32) -> SteeredVip {
    let addr = Ipv6Addr::from(0x2001_0db8_0005_0000_0000_0000_0000_0000u128 | u128::from(i));
    SteeredVip {
        vip: VipAddr {
            addr_be: addr.octets(),
        },
        entry,
        _pad: 0,
    }
}

/// Every key of a per-CPU hash, each CPU's value distinct, reads back with
/// its values in CPU order, whether the kernel is asked for the whole map in
/// one call or for 16 entries a call (about 190 calls, each resuming at the
/// bucket the last one stopped at), and as aya's iteration reads it.
#[test]
fn a_per_cpu_hash_reads_whole_in_one_call_or_many() {
    if !require_root("a_per_cpu_hash_reads_whole_in_one_call_or_many") {
        return;
    }
    let mut datapath = fixture::load(CONFIG);
    let cpus = aya::util::nr_cpus().unwrap();
    let map = datapath.maps().map(MAP_STEERED_VIPS).unwrap();
    let empty = batch::per_cpu_hash::<SteeredVip, u64>(map, MAP_STEERED_VIPS).unwrap();
    assert!(empty.is_empty(), "{} entries before any", empty.len());
    const KEYS: u32 = 3_000;
    let value = |i: u32, cpu: usize| u64::from(i) * 1000 + cpu as u64 + 1;
    let mut expected: HashMap<SteeredVip, Vec<u64>> = HashMap::new();
    {
        let map = datapath.maps_mut().map_mut(MAP_STEERED_VIPS).unwrap();
        let mut vips: PerCpuHashMap<_, SteeredVip, u64> = PerCpuHashMap::try_from(map).unwrap();
        for i in 0..KEYS {
            let key = steered(i, i % 3);
            let values: Vec<u64> = (0..cpus).map(|cpu| value(i, cpu)).collect();
            vips.insert(key, PerCpuValues::try_from(values.clone()).unwrap(), 0)
                .unwrap();
            expected.insert(key, values);
        }
    }
    let map = datapath.maps().map(MAP_STEERED_VIPS).unwrap();
    let read = |chunk: Option<u32>| -> HashMap<SteeredVip, Vec<u64>> {
        let entries =
            batch::per_cpu_hash_in_calls_of::<SteeredVip, u64>(map, MAP_STEERED_VIPS, chunk)
                .unwrap();
        let read: HashMap<_, _> = entries.iter().map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(read.len(), entries.len(), "a key read twice ({chunk:?})");
        read
    };
    assert_eq!(read(None), expected, "in one call");
    assert_eq!(read(Some(16)), expected, "16 entries a call");
    let by_aya: PerCpuHashMap<_, SteeredVip, u64> = PerCpuHashMap::try_from(map).unwrap();
    let iterated: HashMap<SteeredVip, Vec<u64>> = by_aya
        .iter()
        .map(|item| {
            let (key, values) = item.unwrap();
            (key, values.to_vec())
        })
        .collect();
    assert_eq!(iterated, expected, "aya's iteration");
}

/// The declared VIPs, read whole, are the config's, with what aya reads
/// for each.
#[test]
fn a_plain_hash_reads_every_declared_vip() {
    if !require_root("a_plain_hash_reads_every_declared_vip") {
        return;
    }
    let datapath = fixture::load(CONFIG);
    let map = datapath.maps().map(MAP_DECLARED).unwrap();
    let entries = batch::hash::<VipAddr, DeclaredVip>(map, MAP_DECLARED).unwrap();
    let by_aya: BpfHashMap<_, VipAddr, DeclaredVip> = BpfHashMap::try_from(map).unwrap();
    let mut read: Vec<Ipv6Addr> = Vec::new();
    for (key, values) in entries.iter() {
        assert_eq!(values, [by_aya.get(&key, 0).unwrap()]);
        read.push(Ipv6Addr::from(key.addr_be));
    }
    read.sort();
    let mut declared: Vec<Ipv6Addr> = DECLARED.iter().map(|a| a.parse().unwrap()).collect();
    declared.sort();
    assert_eq!(read, declared);
}

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
    assert!(matches!(
        batch::per_cpu_hash::<VipAddr, DeclaredVip>(declared, MAP_DECLARED),
        Err(BatchError::Kind {
            map: MAP_DECLARED,
            expected: "per-CPU hash"
        })
    ));
    assert!(matches!(
        batch::hash::<u32, DeclaredVip>(declared, MAP_DECLARED),
        Err(BatchError::KeySize {
            map: MAP_DECLARED,
            size: 16,
            expected: 4
        })
    ));
    let steered_vips = datapath.maps().map(MAP_STEERED_VIPS).unwrap();
    assert!(matches!(
        batch::hash::<SteeredVip, u64>(steered_vips, MAP_STEERED_VIPS),
        Err(BatchError::Kind {
            map: MAP_STEERED_VIPS,
            expected: "hash"
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
