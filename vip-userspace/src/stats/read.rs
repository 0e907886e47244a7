use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::maps::{Array, Map, MapError, PerCpuArray};
use ipnet::IpNet;
use vip_common::{
    AttachMeta, DeclaredVip, RangeCounts, RangeMeta, SteeredVip, Verdicts, VipAddr, FAMILY_V4,
    GLOBAL_COUNTERS, GLOBAL_DECAP_GUE, GLOBAL_DECAP_IP6IP6, GLOBAL_DECAP_IPIP, GLOBAL_FRAGMENTS,
    GLOBAL_INTERNAL_ERRORS, GLOBAL_MALFORMED, GLOBAL_NON_VIP, MAP_ATTACH_META, MAP_DECLARED,
    MAP_GLOBAL_STATS, MAP_RANGE_META, MAP_STEERED_VIPS, MAP_STEER_STATS, SPARSE_HASH_MULTIPLY,
};

use super::{
    cpu_sum::{self, LiveRanges},
    AttachReport, Decapsulated, GlobalReport, RangeReport, Report, SparsePressure,
    SparseTableReport, SteerReport, SteeredVipReport,
};
use crate::datapath::{
    batch::{self, BatchError, Rows},
    cpu_table::DenseTable,
    interface_name,
    maps::{Maps, MapsError},
    sparse_control, AttachMode, DatapathError,
};
use crate::{
    run_files::RunFileError,
    status::{StatusFile, SteerStatus},
};

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("map {map} is missing")]
    Missing { map: &'static str },
    #[error("reading map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {map} holds an invalid entry: {what}")]
    Corrupt { map: &'static str, what: String },
    #[error(transparent)]
    Status(#[from] RunFileError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// Everything `vip stats`, `vip stats --watch` and `/metrics` show: the counters
/// in the pins, and the running daemon's status from `run_dir` (none when no
/// daemon wrote one). A status file that cannot be read is an error for all three.
pub fn collect(maps: &Maps, run_dir: &Path) -> Result<Report, StatsError> {
    let mut report = read(maps)?;
    if let Some(status) = StatusFile::in_dir(run_dir).load()? {
        report.drift_repairs = status.drift_repairs;
        report.drift_unrepaired = status.drift_unrepaired;
        report.steer = steering(maps, &status.steer)?;
        report.bgp = status.bgp;
        report.bgp_sessions = status.bgp_sessions;
    }
    Ok(report)
}

fn typed<'a, T>(source: &'a Maps, map: &'static str) -> Result<T, StatsError>
where
    T: TryFrom<&'a Map, Error = MapError>,
{
    T::try_from(raw(source, map)?).map_err(|source| StatsError::Map { map, source })
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> StatsError {
    move |source| StatsError::Map { map, source }
}

/// Each range's counters that are not sums of VIP slots, over every CPU, in
/// the order of `live` (id and epoch): its rows of `MAP_RANGE_COUNTS`, plus
/// what the per-range maps of layouts 14 and older hold for it.
fn range_counts(source: &Maps, live: &[(u32, u32)]) -> Result<Vec<RangeCounts>, StatsError> {
    let ids: Vec<u32> = live.iter().map(|&(id, _)| id).collect();
    let mut totals = cpu_sum::range_rows(&source.tables().ranges, &ids);
    let frozen = source.frozen_ranges(live)?;
    for (&(id, epoch), total) in live.iter().zip(totals.iter_mut()) {
        total.merge(&frozen.counts(id, epoch));
    }
    Ok(totals)
}

fn raw<'a>(source: &'a Maps, map: &'static str) -> Result<&'a Map, StatsError> {
    source.map(map).ok_or(StatsError::Missing { map })
}

/// Key `key`'s per-CPU values in `rows` of `map`.
fn row<'a, T>(rows: &'a Rows<T>, map: &'static str, key: u32) -> Result<&'a [T], StatsError> {
    rows.get(key).ok_or_else(|| StatsError::Corrupt {
        map,
        what: format!("no entry {key} of {}", rows.len()),
    })
}

/// Reads every counter into a report.
pub fn read(source: &Maps) -> Result<Report, StatsError> {
    let metas = range_metas(source)?;
    let dense = &source.tables().dense;
    let live: Vec<(u32, u32)> = metas
        .iter()
        .map(|(id, meta, _)| (*id, meta.epoch))
        .collect();
    let counts = range_counts(source, &live)?;
    let mut ranges = metas
        .iter()
        .zip(&counts)
        .map(|((_, meta, cidr), counts)| range_report(counts, dense, meta, *cidr))
        .collect::<Result<Vec<_>, _>>()?;
    let sparse_table = add_sparse_vips(source, &metas, &mut ranges)?;
    add_declared_vips(source, &metas, &mut ranges)?;
    for range in &mut ranges {
        range.vips.sort_by_key(|v| v.addr);
    }
    let attachments = attachments(source)?;
    let mut global = global(source)?;
    global.packets += ranges
        .iter()
        .map(|r| r.packets + r.dropped_packets)
        .sum::<u64>();
    Ok(Report {
        timestamp: None,
        ranges,
        global,
        datapath: super::datapath(source, &attachments),
        attachments,
        drift_repairs: Default::default(),
        drift_unrepaired: Vec::new(),
        steer: Vec::new(),
        bgp: Vec::new(),
        bgp_sessions: Vec::new(),
        sparse_table,
    })
}

/// The configured ranges' metadata with their ids; ids without a range (room
/// kept for reloads, or freed by one) have no family and are skipped.
fn range_metas(source: &Maps) -> Result<Vec<(u32, RangeMeta, IpNet)>, StatsError> {
    let metas: Rows<RangeMeta> = batch::array(raw(source, MAP_RANGE_META)?, MAP_RANGE_META)?;
    let mut ranges = Vec::new();
    for id in 0..metas.len() as u32 {
        let meta = row(&metas, MAP_RANGE_META, id)?[0];
        if meta.family == 0 {
            continue;
        }
        let cidr = meta_cidr(&meta)?;
        ranges.push((id, meta, cidr));
    }
    Ok(ranges)
}

fn meta_cidr(meta: &RangeMeta) -> Result<IpNet, StatsError> {
    let addr = if meta.family == FAMILY_V4 {
        let octets: [u8; 4] = meta.network_be[..4].try_into().expect("4 bytes");
        IpAddr::V4(Ipv4Addr::from(octets))
    } else {
        IpAddr::V6(Ipv6Addr::from(meta.network_be))
    };
    IpNet::new(addr, meta.prefix_len as u8).map_err(|_| StatsError::Corrupt {
        map: MAP_RANGE_META,
        what: format!("prefix length {} for {addr}", meta.prefix_len),
    })
}

fn meta_name(meta: &RangeMeta) -> String {
    let len = meta
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(meta.name.len());
    String::from_utf8_lossy(&meta.name[..len]).into_owned()
}

fn range_report(
    counts: &RangeCounts,
    dense: &DenseTable,
    meta: &RangeMeta,
    cidr: IpNet,
) -> Result<RangeReport, StatsError> {
    let overflow = counts.stats.sparse_overflow;
    // The range's totals: its overflow, plus its VIP slots (sparse ones are added
    // by `add_sparse_vips`).
    let mut report = RangeReport {
        name: meta_name(meta),
        cidr: cidr.to_string(),
        sparse_overflow_packets: overflow.accepted.packets + overflow.dropped.packets,
        ..RangeReport::default()
    };
    report.add(&overflow);
    if meta.dense_len == 0 {
        let pressure = counts.pressure;
        report.add(&pressure.reclaimed);
        report.add(&pressure.unlearned);
        let packets = |v: &Verdicts| v.accepted.packets + v.dropped.packets;
        report.sparse = Some(SparsePressure {
            slots_learned: pressure.slots_learned,
            slots_reclaimed: pressure.slots_reclaimed,
            reclaimed_packets: packets(&pressure.reclaimed),
            unlearned_packets: packets(&pressure.unlearned),
            ..SparsePressure::default()
        });
    }
    report.delivered_packets = counts.delivered;
    if meta.dense_len > 0 {
        if meta
            .dense_base
            .checked_add(meta.dense_len)
            .is_none_or(|end| end > dense.stride())
        {
            return Err(StatsError::Corrupt {
                map: MAP_RANGE_META,
                what: format!(
                    "dense slots {}+{} of {cidr} beyond the table",
                    meta.dense_base, meta.dense_len
                ),
            });
        }
        // Address `offset` of the range (a dense IPv6 range lies in one /112).
        let vip = |offset: u32| match cidr {
            IpNet::V4(net) => IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) + offset)),
            IpNet::V6(net) => IpAddr::V6(Ipv6Addr::from(
                u128::from(net.network()) + u128::from(offset),
            )),
        };
        let sums = cpu_sum::dense_slots(dense, meta.dense_base, meta.dense_len);
        for (offset, verdicts) in (0..).zip(&sums) {
            report.add_vip(vip(offset), verdicts, false);
        }
    }
    Ok(report)
}

/// Adds the sparse table's VIPs, and counts the slots each range holds on each
/// CPU. Each CPU's copy of a slot may hold a different VIP; a slot counts for
/// the range whose id and epoch it recorded, if that range is still configured
/// (a reload may have removed it).
fn add_sparse_vips(
    source: &Maps,
    metas: &[(u32, RangeMeta, IpNet)],
    ranges: &mut [RangeReport],
) -> Result<SparseTableReport, StatsError> {
    let live = LiveRanges::new(metas.iter().map(|(id, meta, _)| (*id, meta.epoch)));
    let sparse = &source.tables().sparse;
    let control = sparse_control::read(source)?;
    let word = sparse_control::tag_word(source)?;
    let cpus = sparse.cpus() as usize;
    let walk = cpu_sum::sparse_walk(sparse, &live, word, ranges.len());
    let table = SparseTableReport {
        slots: u64::from(sparse.stride()),
        used_per_cpu: walk.used_per_cpu,
        idle_per_cpu: walk.idle_per_cpu,
        keyed: control.hash_key != 0,
        hash: match control.hash_kind {
            SPARSE_HASH_MULTIPLY => "multiply",
            _ => "fmix",
        }
        .to_string(),
        generation: control.generation,
    };
    for range in ranges.iter_mut() {
        if let Some(pressure) = &mut range.sparse {
            pressure.slots_per_cpu = vec![0; cpus];
        }
    }
    for (cpu, held) in walk.held.iter().enumerate() {
        for (range, &slots) in ranges.iter_mut().zip(held) {
            if let Some(pressure) = &mut range.sparse {
                pressure.slots_per_cpu[cpu] = u64::from(slots);
            }
        }
    }
    let mut vips = walk.sum;
    // A datapath upgraded from layout 11 or older: the counts its old
    // programs left in their table (which they write only until the upgrade
    // replaces them), added to the same VIPs' rows.
    let frozen = &source.tables().frozen;
    for cpu in 0..frozen.cpus() {
        for index in 0..frozen.stride() {
            let slot = frozen.get(cpu, index);
            if slot.epoch == 0 {
                continue;
            }
            if let Some(range) = live.index(slot.range_id, slot.epoch) {
                vips.add_frozen(range, slot.vip, &slot.verdicts);
            }
        }
    }
    for (range, vip, verdicts) in vips.totals() {
        ranges[range].add_vip(vip_ip(&vip), &verdicts, false);
    }
    Ok(table)
}

/// Adds the declared VIPs of sparse ranges, each from its dense slot, listed
/// whether or not they saw traffic. An entry counts for the range of its epoch,
/// if that range is still configured.
fn add_declared_vips(
    source: &Maps,
    metas: &[(u32, RangeMeta, IpNet)],
    ranges: &mut [RangeReport],
) -> Result<(), StatsError> {
    let by_epoch: HashMap<u32, usize> = metas
        .iter()
        .enumerate()
        .map(|(index, (_, meta, _))| (meta.epoch, index))
        .collect();
    let declared = batch::hash::<VipAddr, DeclaredVip>(raw(source, MAP_DECLARED)?, MAP_DECLARED)?;
    let dense = &source.tables().dense;
    for (key, values) in declared.iter() {
        let value = values[0];
        let Some(&index) = by_epoch.get(&value.epoch) else {
            continue;
        };
        if value.dense_index >= dense.stride() {
            return Err(StatsError::Corrupt {
                map: MAP_DECLARED,
                what: format!("dense slot {} beyond the table", value.dense_index),
            });
        }
        let mut verdicts = Verdicts::default();
        for cpu in 0..dense.cpus() {
            verdicts.merge(&dense.get(cpu, value.dense_index));
        }
        let range = &mut ranges[index];
        range.add_vip(vip_ip(&key), &verdicts, true);
        if let Some(pressure) = &mut range.sparse {
            pressure.declared_vips += 1;
        }
    }
    Ok(())
}

pub fn vip_ip(key: &VipAddr) -> IpAddr {
    let v6 = Ipv6Addr::from(key.addr_be);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn global(source: &Maps) -> Result<GlobalReport, StatsError> {
    let counters: PerCpuArray<_, u64> = typed(source, MAP_GLOBAL_STATS)?;
    let mut totals = [0u64; GLOBAL_COUNTERS as usize];
    for (index, total) in totals.iter_mut().enumerate() {
        let values = counters
            .get(&(index as u32), 0)
            .map_err(map_err(MAP_GLOBAL_STATS))?;
        *total = values.iter().sum();
    }
    let [non_vip, malformed, internal, fragments, ipip, ip6ip6, gue] = [
        GLOBAL_NON_VIP,
        GLOBAL_MALFORMED,
        GLOBAL_INTERNAL_ERRORS,
        GLOBAL_FRAGMENTS,
        GLOBAL_DECAP_IPIP,
        GLOBAL_DECAP_IP6IP6,
        GLOBAL_DECAP_GUE,
    ]
    .map(|index| totals[index as usize]);
    Ok(GlobalReport {
        // Every packet is in exactly one counter; the caller adds the ranges'.
        packets: non_vip + malformed + internal,
        non_vip_packets: non_vip,
        malformed_packets: malformed,
        internal_errors: internal,
        fragments,
        decapsulated: Decapsulated { ipip, ip6ip6, gue },
    })
}

/// The steer targets `status` lists (from the daemon's status file), with the
/// lookups steered to each, in total and per VIP.
pub fn steering(source: &Maps, status: &[SteerStatus]) -> Result<Vec<SteerReport>, StatsError> {
    let totals: PerCpuArray<_, u64> = typed(source, MAP_STEER_STATS)?;
    let per_vip =
        batch::per_cpu_hash::<SteeredVip, u64>(raw(source, MAP_STEERED_VIPS)?, MAP_STEERED_VIPS)?;
    let mut vips: BTreeMap<u32, Vec<SteeredVipReport>> = BTreeMap::new();
    for (key, values) in per_vip.iter() {
        vips.entry(key.entry).or_default().push(SteeredVipReport {
            addr: vip_ip(&key.vip),
            packets: values.iter().sum(),
        });
    }
    status
        .iter()
        .map(|s| {
            let packets = totals
                .get(&s.entry, 0)
                .map_err(map_err(MAP_STEER_STATS))?
                .iter()
                .sum();
            let mut vips = vips.remove(&s.entry).unwrap_or_default();
            vips.sort_by_key(|v| v.addr);
            Ok(SteerReport {
                range: s.range.clone(),
                matches: s.matches.clone(),
                to: s.to.clone(),
                up: s.up,
                packets,
                vips,
            })
        })
        .collect()
}

/// Where the datapath is attached, and how.
pub fn attachments(source: &Maps) -> Result<Vec<AttachReport>, StatsError> {
    let metas: Array<_, AttachMeta> = typed(source, MAP_ATTACH_META)?;
    let mut reports = Vec::new();
    for meta in metas.iter() {
        let meta = meta.map_err(map_err(MAP_ATTACH_META))?;
        let Some(mode) = AttachMode::from_meta(meta.mode) else {
            continue; // an unused slot
        };
        reports.push(AttachReport {
            interface: interface_name(&meta),
            mode: mode.as_str().to_string(),
            fallback: meta.fallback != 0,
        });
    }
    Ok(reports)
}

impl crate::errors::Blame for StatsError {
    fn is_user_error(&self) -> bool {
        match self {
            StatsError::Maps(e) => e.is_user_error(),
            StatsError::Status(e) => e.is_user_error(),
            _ => false,
        }
    }
}
