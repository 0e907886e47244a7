//! The scrape bench's hash maps: how long a read of 65,536 declared VIPs
//! (`MAP_DECLARED`) and of 65,536 steered VIPs (`MAP_STEERED_VIPS`, one
//! counter per possible CPU) takes, each checked VIP by VIP.

use std::{
    collections::HashMap,
    fmt::Write,
    net::{IpAddr, Ipv6Addr},
    time::{Duration, Instant},
};

use aya::maps::{PerCpuHashMap, PerCpuValues};
use vip_common::{SteeredVip, VipAddr, MAP_STEERED_VIPS};
use vip_userspace::{
    stats::{self, SteerReport},
    status::SteerStatus,
};

use crate::{
    fixture::{self, Program, Verdict},
    packets::FrameSpec,
};

/// Declared VIPs: the most a datapath holds.
pub const DECLARED: u32 = 65_536;
/// Steered VIPs: as many as `MAP_STEERED_VIPS` holds.
pub const STEERED: u32 = vip_common::STEERED_VIPS;
const RANGES: u32 = 16;
/// Steer targets the steered VIPs are spread over.
const TARGETS: u32 = 4;

pub struct HashReads {
    /// `stats::read` of a datapath whose VIPs are all declared.
    pub declared: Vec<Duration>,
    /// `stats::steering` of the steered VIPs' counters.
    pub steered: Vec<Duration>,
}

fn declared_vip(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(
        0x2001_0db8_0000_0000_0000_0000_0000_0000u128
            | u128::from(i % RANGES) << 64
            | u128::from(i / RANGES + 1),
    )
}

/// 16 IPv6 ranges that learn nothing, each declaring a sixteenth of the VIPs.
fn config() -> String {
    let mut text = String::from("interfaces = [\"lo\"]\n");
    for r in 0..RANGES {
        let vips: Vec<String> = (0..DECLARED / RANGES)
            .map(|k| format!("\"{}\"", declared_vip(k * RANGES + r)))
            .collect();
        let _ = write!(
            text,
            "[[range]]\nname = \"d{r}\"\ncidr = \"2001:db8:0:{r:x}::/64\"\nlearn = false\n\
             vips = [{}]\n",
            vips.join(", ")
        );
    }
    text
}

fn steered_key(i: u32) -> SteeredVip {
    SteeredVip {
        vip: VipAddr {
            addr_be: declared_vip(i).octets(),
        },
        entry: i % TARGETS,
        _pad: 0,
    }
}

/// Each possible CPU's count of steered VIP `i`.
fn steered_count(i: u32, cpu: usize) -> u64 {
    u64::from(i % 7) + cpu as u64 + 1
}

/// Counts one packet to each declared VIP through BPF_PROG_TEST_RUN, writes
/// every steered VIP's per-CPU counts as the socket lookup program keeps them
/// (from here: BPF_PROG_TEST_RUN cannot hand that program sockets), then
/// reads both `runs` times. Panics unless every read gives each VIP exactly
/// its count.
pub fn measure(runs: usize) -> HashReads {
    let mut datapath = fixture::load(&config());
    let allowed = fixture::allowed_cpus();
    fixture::pin_to_cpu(allowed[0]);
    for i in 0..DECLARED {
        let frame = FrameSpec::udp(IpAddr::V6(declared_vip(i)), 53).build();
        assert_eq!(
            fixture::run_once(&mut datapath, Program::Xdp, &frame),
            Verdict::Pass
        );
    }
    fixture::allow_cpus(&allowed);
    let cpus = aya::util::nr_cpus().expect("CPU count");
    {
        let map = datapath
            .maps_mut()
            .map_mut(MAP_STEERED_VIPS)
            .expect("the steered-VIP map");
        let mut vips: PerCpuHashMap<_, SteeredVip, u64> =
            PerCpuHashMap::try_from(map).expect("a per-CPU hash");
        for i in 0..STEERED {
            let counts: Vec<u64> = (0..cpus).map(|cpu| steered_count(i, cpu)).collect();
            vips.insert(
                steered_key(i),
                PerCpuValues::try_from(counts).expect("one count per CPU"),
                0,
            )
            .expect("writing a steered VIP");
        }
    }
    let targets: Vec<SteerStatus> = (0..TARGETS)
        .map(|entry| SteerStatus {
            range: format!("d{entry}"),
            matches: "tcp/80".into(),
            to: format!("target {entry}"),
            entry,
            up: true,
        })
        .collect();
    let mut reads = HashReads {
        declared: Vec::new(),
        steered: Vec::new(),
    };
    for _ in 0..runs {
        let start = Instant::now();
        let report = stats::read(datapath.maps()).expect("reading counters");
        reads.declared.push(start.elapsed());
        assert_declared(&report);
        let start = Instant::now();
        let steering = stats::steering(datapath.maps(), &targets).expect("reading steering");
        reads.steered.push(start.elapsed());
        assert_steered(&steering, cpus);
    }
    reads
}

fn assert_declared(report: &stats::Report) {
    let mut seen = 0u32;
    for range in &report.ranges {
        for vip in &range.vips {
            assert!(vip.declared, "{} is not marked declared", vip.addr);
            assert_eq!((vip.packets, vip.dropped_packets), (1, 0), "{}", vip.addr);
            seen += 1;
        }
    }
    assert_eq!(seen, DECLARED, "declared VIPs read");
}

fn assert_steered(steering: &[SteerReport], cpus: usize) {
    let expected: HashMap<(u32, IpAddr), u64> = (0..STEERED)
        .map(|i| {
            let total = (0..cpus).map(|cpu| steered_count(i, cpu)).sum();
            ((i % TARGETS, IpAddr::V6(declared_vip(i))), total)
        })
        .collect();
    let mut read = HashMap::new();
    for (entry, target) in steering.iter().enumerate() {
        for vip in &target.vips {
            read.insert((entry as u32, vip.addr), vip.packets);
        }
    }
    assert_eq!(read.len(), expected.len(), "steered VIPs read");
    assert!(read == expected, "a steered VIP's count differs");
}

/// The scrape table's rows for these reads, on a host of `cpus` possible CPUs.
pub fn rows(reads: &HashReads, cpus: u32, ms: impl Fn(&[Duration]) -> String) -> String {
    format!(
        "| read every counter of {DECLARED} declared VIPs in {RANGES} ranges | {} | none |\n\
         | read {STEERED} steered VIPs' counters ({cpus} possible CPUs) | {} | none |\n",
        ms(&reads.declared),
        ms(&reads.steered),
    )
}
