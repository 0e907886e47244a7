//! Per-VIP rows and per-range counters as `stats::read` reports them, split
//! by the CPU that counted them: what the many-CPU read must give back when
//! it reads the tables of an emulated host (`Maps::emulate_cpus`).

use std::{collections::HashMap, net::IpAddr};

use vip_userspace::stats::Report;

/// Packets and bytes by VIP.
pub type Rows = HashMap<IpAddr, (u64, u64)>;

/// Each VIP row's packets and bytes. Panics on a VIP with two rows.
pub fn rows(report: &Report) -> Rows {
    let mut rows = Rows::new();
    for vip in report.ranges.iter().flat_map(|r| &r.vips) {
        let earlier = rows.insert(vip.addr, (vip.packets, vip.bytes));
        assert!(earlier.is_none(), "two rows for {}", vip.addr);
    }
    rows
}

/// What the CPU filled last counted: `report`'s rows less those the CPUs
/// filled before it counted (`before`), VIPs it did not count left out.
pub fn counted_since(report: &Report, before: &[Rows]) -> Rows {
    let mut rows = rows(report);
    for earlier in before {
        for (vip, (packets, bytes)) in earlier {
            let row = rows.get_mut(vip).expect("a VIP's row stays");
            row.0 -= packets;
            row.1 -= bytes;
        }
    }
    rows.retain(|_, (packets, _)| *packets > 0);
    rows
}

/// Panics unless `report` has exactly the rows of a host whose CPU `c`
/// counted what the CPU filled at `positions[c]` did (`per_cpu`).
pub fn assert_rows_over(report: &Report, positions: &[usize], per_cpu: &[Rows]) {
    let mut want = Rows::new();
    for &position in positions {
        for (vip, (packets, bytes)) in &per_cpu[position] {
            let row = want.entry(*vip).or_default();
            row.0 += packets;
            row.1 += bytes;
        }
    }
    let got = rows(report);
    let cpus = positions.len();
    assert_eq!(got.len(), want.len(), "VIP rows over {cpus} CPUs");
    for (vip, counts) in &want {
        assert_eq!(got.get(vip), Some(counts), "{vip} over {cpus} CPUs");
    }
}

/// Per range, in report order: the counters kept per range and CPU rather
/// than per VIP (`MAP_RANGE_COUNTS`), slots learned and overflow packets.
pub type RangeRows = Vec<(u64, u64)>;

/// Each range's slots learned and overflow packets.
pub fn range_rows(report: &Report) -> RangeRows {
    report
        .ranges
        .iter()
        .map(|r| {
            let learned = r.sparse.as_ref().map_or(0, |s| s.slots_learned);
            (learned, r.sparse_overflow_packets)
        })
        .collect()
}

/// What the CPU filled last counted per range: `report`'s less what the
/// CPUs filled before it counted (`before`).
pub fn ranges_counted_since(report: &Report, before: &[RangeRows]) -> RangeRows {
    let mut rows = range_rows(report);
    for earlier in before {
        for (row, (learned, overflow)) in rows.iter_mut().zip(earlier) {
            row.0 -= learned;
            row.1 -= overflow;
        }
    }
    rows
}

/// Panics unless each range of `report` has exactly the per-range counters
/// of a host whose CPU `c` counted what the CPU filled at `positions[c]`
/// did (`per_cpu`).
pub fn assert_ranges_over(report: &Report, positions: &[usize], per_cpu: &[RangeRows]) {
    let mut want = vec![(0, 0); report.ranges.len()];
    for &position in positions {
        for (row, (learned, overflow)) in want.iter_mut().zip(&per_cpu[position]) {
            row.0 += learned;
            row.1 += overflow;
        }
    }
    let cpus = positions.len();
    for ((range, got), want) in report.ranges.iter().zip(range_rows(report)).zip(want) {
        assert_eq!(
            got, want,
            "range {} over {cpus} CPUs: slots learned and overflow packets",
            range.name
        );
    }
}
