//! Reading the counters as a host with many CPUs holds them: each CPU keeps its
//! own copy of every per-VIP slot, and CPUs that met VIPs in different orders
//! hold some of them at different slots. The tables of a 40-CPU host are
//! emulated from this host's (`Maps::emulate_cpus`) and read the way
//! `vip stats` and a scrape read, by several threads where this host has more
//! than one CPU; every VIP must read exactly its packets over all 40.

use std::{collections::HashMap, net::IpAddr};

use vip_tests::{
    cpu_rows::{
        assert_ranges_over, assert_rows_over, counted_since, ranges_counted_since, RangeRows, Rows,
    },
    fixture::{self, Program, Verdict},
    packets::FrameSpec,
    root::require_root,
};
use vip_userspace::{
    stats::{self, Report},
    Loaded,
};

const CONFIG: &str = r#"
interfaces = ["lo"]
sparse_vip_capacity = 512

[[range]]
name = "a"
cidr = "2001:db8:1::/64"

[[range]]
name = "b"
cidr = "2001:db8:2::/64"

[[range]]
name = "c"
cidr = "2001:db8:3::/64"

[[range]]
name = "dense"
cidr = "192.0.2.0/28"
"#;

/// 600 VIPs in a table of 1,024 slots per CPU: enough that two orders of
/// arrival place many of them differently.
const SPARSE_VIPS: u32 = 600;
const EMULATED: u32 = 40;

fn sparse_vip(i: u32) -> IpAddr {
    format!("2001:db8:{}::{:x}", i % 3 + 1, i + 1)
        .parse()
        .unwrap()
}

fn dense_vip(k: u32) -> IpAddr {
    format!("192.0.2.{k}").parse().unwrap()
}

fn send(datapath: &mut Loaded, vip: IpAddr, packets: u64) -> u64 {
    let frame = FrameSpec::udp(vip, 53).build();
    for _ in 0..packets {
        assert_eq!(
            fixture::run_once(datapath, Program::Xdp, &frame),
            Verdict::Pass
        );
    }
    frame.len() as u64
}

/// The first of `cpus` counts the VIPs in one order, the second (where
/// there is one) in the reverse; dense VIP `k` gets `k + 1` packets on the
/// first and twice that on the second. Returns, per CPU filled, each VIP's
/// packets and bytes there, and the report after each CPU.
fn fill(datapath: &mut Loaded, cpus: &[u32]) -> (Vec<Rows>, Vec<Report>) {
    let allowed = fixture::allowed_cpus();
    let mut per_cpu: Vec<Rows> = Vec::new();
    let mut reports = Vec::new();
    for (position, &cpu) in (0u32..).zip(cpus) {
        fixture::pin_to_cpu(cpu as usize);
        let order: Vec<u32> = if position == 0 {
            (0..SPARSE_VIPS).collect()
        } else {
            (0..SPARSE_VIPS).rev().collect()
        };
        for i in order {
            send(datapath, sparse_vip(i), 1);
        }
        for k in 0..16 {
            send(
                datapath,
                dense_vip(k),
                u64::from(k + 1) * u64::from(position + 1),
            );
        }
        let report = stats::read(datapath.maps()).unwrap();
        per_cpu.push(counted_since(&report, &per_cpu));
        reports.push(report);
    }
    fixture::allow_cpus(&allowed);
    (per_cpu, reports)
}

/// VIPs held at another slot on CPU `second` than on CPU `first`.
fn placed_differently(datapath: &Loaded, first: u32, second: u32) -> usize {
    let sparse = &datapath.maps().tables().sparse;
    let at = |cpu| -> HashMap<_, _> {
        (0..sparse.stride())
            .filter_map(|index| sparse.get(cpu, index).map(|row| (row.vip, index)))
            .collect()
    };
    let (first, second) = (at(first), at(second));
    first
        .iter()
        .filter(|(vip, index)| second.get(vip).is_some_and(|other| other != *index))
        .count()
}

#[test]
fn every_vip_reads_its_packets_over_forty_emulated_cpus() {
    if !require_root("every_vip_reads_its_packets_over_forty_emulated_cpus") {
        return;
    }
    let mut datapath = fixture::load(CONFIG);
    let used: Vec<u32> = fixture::allowed_cpus()
        .into_iter()
        .take(2)
        .map(|cpu| cpu as u32)
        .collect();
    let (per_cpu, reports) = fill(&mut datapath, &used);
    let last = used.len() - 1;
    let dense_frame = FrameSpec::udp(dense_vip(0), 53).build().len() as u64;
    for (position, counted) in per_cpu.iter().enumerate() {
        for k in 0..16 {
            let packets = u64::from(k + 1) * (position as u64 + 1);
            assert_eq!(
                counted.get(&dense_vip(k)),
                Some(&(packets, packets * dense_frame)),
                "dense VIP {k} on CPU {}",
                used[position]
            );
        }
        // A VIP that found no slot among its probes counted in its range's
        // overflow instead (about one in a hundred at this load).
        let overflow = |report: &Report| -> u64 {
            report
                .ranges
                .iter()
                .map(|r| r.sparse_overflow_packets)
                .sum()
        };
        let before = position.checked_sub(1).map_or(0, |c| overflow(&reports[c]));
        let sparse_rows = counted.len() as u64 - 16;
        assert_eq!(
            sparse_rows + overflow(&reports[position]) - before,
            u64::from(SPARSE_VIPS),
            "CPU {}'s sparse rows and overflow",
            used[position]
        );
        assert!(sparse_rows >= u64::from(SPARSE_VIPS) * 9 / 10);
    }
    if used.len() == 2 {
        let moved = placed_differently(&datapath, used[0], used[1]);
        assert!(moved >= 10, "only {moved} VIPs at other slots on CPU 1");
    }
    let real = reports.last().unwrap();

    // CPUs 0, 3, 6, ... as the first CPU filled; the others as the last.
    let position = |cpu: u32| if cpu.is_multiple_of(3) { 0 } else { last };
    let source = |cpu: u32| used[position(cpu)];
    datapath.maps_mut().emulate_cpus(EMULATED, &source).unwrap();
    let report = stats::read(datapath.maps()).unwrap();

    let positions: Vec<usize> = (0..EMULATED).map(position).collect();
    assert_rows_over(&report, &positions, &per_cpu);
    // Dense VIP k counted k + 1 packets on CPU 0 and 2(k + 1) on CPU 1.
    let per_cpu_factor: u64 = (0..EMULATED).map(|cpu| position(cpu) as u64 + 1).sum();
    let dense_packets: u64 = (1..=16u64).map(|k| k * per_cpu_factor).sum();
    let dense = report.ranges.iter().find(|r| r.name == "dense").unwrap();
    assert_eq!(dense.packets, dense_packets);

    let table = &report.sparse_table;
    let expect_per_cpu =
        |of: &[u64]| -> Vec<u64> { (0..EMULATED).map(|cpu| of[source(cpu) as usize]).collect() };
    assert_eq!(
        table.used_per_cpu,
        expect_per_cpu(&real.sparse_table.used_per_cpu)
    );
    assert_eq!(
        table.idle_per_cpu,
        expect_per_cpu(&real.sparse_table.idle_per_cpu)
    );
    for range in report.ranges.iter().filter(|r| r.name != "dense") {
        let before = real.ranges.iter().find(|r| r.name == range.name).unwrap();
        let (now, then) = (
            range.sparse.as_ref().unwrap(),
            before.sparse.as_ref().unwrap(),
        );
        assert_eq!(
            now.slots_per_cpu,
            expect_per_cpu(&then.slots_per_cpu),
            "range {}",
            range.name
        );
    }
    // The per-range counters (`MAP_RANGE_COUNTS`) are a CPU table too: each
    // emulated CPU adds what its source CPU counted.
    let mut by_range: Vec<RangeRows> = Vec::new();
    for report in &reports {
        let own = ranges_counted_since(report, &by_range);
        by_range.push(own);
    }
    for own in &by_range {
        let learning = own.iter().filter(|(learned, _)| *learned > 0).count();
        assert_eq!(
            learning, 3,
            "each CPU learned slots in the three sparse ranges"
        );
    }
    assert_ranges_over(&report, &positions, &by_range);
}
