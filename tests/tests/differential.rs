//! Differential test: random and mutated frames through `vip_xdp` and `vip_tc`
//! under BPF_PROG_TEST_RUN, each checked against the etherparse-based reference
//! classifier (tests/src/oracle.rs): the verdict, and which counter moved.
//!
//! `VIP_DIFF_SEED` replays a run; `VIP_DIFF_PACKETS` sets the count (default
//! 200,000, each through both programs).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use aya::maps::PerCpuArray;
use ipnet::IpNet;
use vip_common::{
    sparse_hash, Verdicts, VipAddr, GLOBAL_COUNTERS, GLOBAL_FRAGMENTS, GLOBAL_MALFORMED,
    GLOBAL_NON_VIP, MAP_GLOBAL_STATS, SPARSE_PROBES,
};
use vip_tests::{
    fixture::{self, hex, Program, Verdict},
    fuzz::Generator,
    oracle::{self, Key},
    root::require_root,
};
use vip_userspace::{Config, Layout, Loaded};

const CONFIG: &str = r#"
interfaces = ["lo"]

[[range]]
name = "web"
cidr = "192.0.2.0/24"
allow = ["tcp/80", "tcp/443", "udp/53", "udp/5000-5100", "icmp"]

[[range]]
name = "small"
cidr = "198.51.100.16/28"

[[range]]
name = "ssh"
cidr = "203.0.113.128/25"
allow = ["tcp/22"]

[[range]]
name = "v6"
cidr = "2001:db8:1::/64"
allow = ["tcp/80", "udp/53", "udp/5000-5100", "icmp"]

[[range]]
name = "open6"
cidr = "2001:db8:2::/64"

[[range]]
name = "none6"
cidr = "2001:db8:3::/64"
allow = []
"#;

/// Reads the counters the oracle names, summed over CPUs.
struct Probe<'a> {
    datapath: &'a Loaded,
    layout: &'a Layout,
}

impl Probe<'_> {
    fn globals(&self) -> [u64; GLOBAL_COUNTERS as usize] {
        let map: PerCpuArray<_, u64> = self
            .datapath
            .maps()
            .map(MAP_GLOBAL_STATS)
            .unwrap()
            .try_into()
            .unwrap();
        std::array::from_fn(|i| map.get(&(i as u32), 0).unwrap().iter().sum())
    }

    fn vip(&self, range: usize, vip: IpAddr) -> Verdicts {
        let owner = &self.layout.ranges[range];
        let mut total = Verdicts::default();
        match (owner.dense_len, vip) {
            (1.., IpAddr::V4(v4)) => {
                let table = &self.datapath.maps().tables().dense;
                let index = owner.value.dense_base + (u32::from(v4) - owner.value.network_v4_host);
                for cpu in 0..table.cpus() {
                    total.merge(&table.get(cpu, index));
                }
            }
            _ => {
                let key = match vip {
                    IpAddr::V4(v4) => VipAddr::from_v4_be(v4.octets()),
                    IpAddr::V6(v6) => VipAddr::from_v6_be(v6.octets()),
                };
                // The table's probe sequence, as the datapath walks it.
                let table = &self.datapath.maps().tables().sparse;
                let mask = self.layout.sparse_slots - 1;
                let start = sparse_hash(&key);
                for i in 0..SPARSE_PROBES {
                    let index = start.wrapping_add(i) & mask;
                    for slot in (0..table.cpus()).map(|cpu| table.get(cpu, index)) {
                        if slot.vip == key
                            && slot.range_id == owner.value.range_id
                            && slot.epoch == owner.value.epoch
                        {
                            total.merge(&slot.verdicts);
                        }
                    }
                }
            }
        }
        total
    }

    /// The value of the counter `key` names.
    fn read(&self, key: Key) -> u64 {
        match key {
            Key::Accepted { range, vip } => self.vip(range, vip).accepted.packets,
            Key::Dropped { range, vip } => self.vip(range, vip).dropped.packets,
            Key::NonVip => self.globals()[GLOBAL_NON_VIP as usize],
            Key::Malformed => self.globals()[GLOBAL_MALFORMED as usize],
        }
    }
}

fn seed() -> u64 {
    std::env::var("VIP_DIFF_SEED")
        .ok()
        .map(|s| s.parse().expect("VIP_DIFF_SEED is a number"))
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[test]
fn datapath_agrees_with_the_reference_classifier() {
    if !require_root("datapath_agrees_with_the_reference_classifier") {
        return;
    }
    let seed = seed();
    let packets: usize = std::env::var("VIP_DIFF_PACKETS").map_or(200_000, |n| n.parse().unwrap());
    println!("differential: seed {seed} (replay with VIP_DIFF_SEED={seed}), {packets} packets");

    let config = Config::parse(CONFIG, Path::new("differential")).unwrap();
    let layout = Layout::new(&config);
    let mut datapath = fixture::load(CONFIG);
    let cidrs: Vec<IpNet> = config.ranges.iter().map(|r| r.cidr).collect();
    let mut generator = Generator::new(seed, &cidrs, &[22, 53, 80, 443, 5000, 5100]);
    let mut tally: BTreeMap<&str, u64> = BTreeMap::new();
    // Every frame lands in exactly one counter, so the sum of all counters grows by
    // one a run: checked in full every `CHECK_EVERY` packets, which catches a
    // counter that moved besides the one the reference names.
    const CHECK_EVERY: usize = 5_000;
    let mut total_before = fixture::snapshot(&datapath).global.packets;
    let mut runs = 0u64;

    for index in 0..packets {
        if index % CHECK_EVERY == 0 && index > 0 {
            let total = fixture::snapshot(&datapath).global.packets;
            assert_eq!(
                total - total_before,
                runs,
                "packets {}..{index} (seed {seed}): counters moved {} times for {runs} runs",
                index - CHECK_EVERY,
                total - total_before
            );
            (total_before, runs) = (total, 0);
        }
        let frame = generator.frame();
        let want = oracle::classify(&config, &frame);
        *tally
            .entry(match want.key {
                Key::Accepted { .. } => "accepted",
                Key::Dropped { .. } => "dropped",
                Key::NonVip => "non-VIP",
                Key::Malformed => "malformed",
            })
            .or_default() += 1;
        for program in [Program::Xdp, Program::Tc] {
            let probe = Probe {
                datapath: &datapath,
                layout: &layout,
            };
            let (key_before, globals_before) = (probe.read(want.key), probe.globals());
            runs += 1;
            let Ok(verdict) = fixture::try_run_once(&mut datapath, program, &frame) else {
                runs -= 1;
                // BPF_PROG_TEST_RUN refuses skb frames whose IP header is cut short.
                assert!(
                    program == Program::Tc && want.key == Key::Malformed,
                    "packet {index} refused by {program:?}; seed {seed}\n{}",
                    hex(&frame)
                );
                continue;
            };
            let probe = Probe {
                datapath: &datapath,
                layout: &layout,
            };
            let (key_after, globals_after) = (probe.read(want.key), probe.globals());
            let fragments = globals_after[GLOBAL_FRAGMENTS as usize]
                - globals_before[GLOBAL_FRAGMENTS as usize];
            let want_verdict = if want.drop {
                Verdict::Drop
            } else {
                Verdict::Pass
            };
            let moved_globals: u64 = (0..GLOBAL_COUNTERS as usize)
                .filter(|&i| i != GLOBAL_FRAGMENTS as usize)
                .map(|i| globals_after[i] - globals_before[i])
                .sum();
            let want_globals = u64::from(matches!(want.key, Key::NonVip | Key::Malformed));
            let agrees = verdict == want_verdict
                && key_after == key_before + 1
                && fragments == u64::from(want.fragment)
                && moved_globals == want_globals;
            assert!(
                agrees,
                "packet {index} (seed {seed}) through {program:?}: verdict {verdict:?}, counter {key_before} -> {key_after}, \
                 fragments +{fragments}, globals +{moved_globals}; the reference says {want:?}\n{}",
                hex(&frame)
            );
        }
    }
    println!("differential: {packets} packets agreed through XDP and TC: {tally:?}");
    for kind in ["accepted", "dropped", "non-VIP", "malformed"] {
        assert!(
            tally.get(kind).copied().unwrap_or(0) > packets as u64 / 50,
            "the generator covers {kind}: {tally:?}"
        );
    }
}
