//! Differential test: random and mutated frames through `vip_xdp` and `vip_tc`
//! under BPF_PROG_TEST_RUN, each checked against the etherparse-based reference
//! classifier (tests/src/oracle.rs): the verdict, and which counter moved.
//!
//! Dense IPv6 ranges (/112 or longer) cover the IPv6 dense index's three
//! cases: a range alone in its /112 block, a whole block, and two ranges in
//! one block (found through the trie), with misses just outside each in the
//! same block. Ranges lie inside ranges (IPv4 to three levels, dense IPv6
//! ranges inside sparse and dense ones): the oracle gives an address to its
//! most specific range.
//!
//! Packets to sparse VIPs are also checked against a model of the sparse table
//! (tests/src/sparse_model.rs) on a table small enough to fill, with sweeps
//! every `SWEEP_EVERY` packets: which slot each VIP takes, overflow, reclaim
//! and what it moves, declared VIPs, a range that does not learn, and one that
//! only counts (whose slots the datapath marks to count through them alone).
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
    RangeCounts, RangePressure, Verdicts, VipAddr, GLOBAL_COUNTERS, GLOBAL_FRAGMENTS,
    GLOBAL_MALFORMED, GLOBAL_NON_VIP, MAP_GLOBAL_STATS, PER_VIP_DENSE, SPARSE_HASH_MULTIPLY,
};
use vip_tests::{
    fixture::{self, hex, Program, Verdict},
    fuzz::Generator,
    oracle::{self, Key},
    root::require_root,
    sparse_model::{Counted, SparseModel},
};
use vip_userspace::{Config, Layout, Loaded};

/// Packets between two sweeps of the sparse table.
const SWEEP_EVERY: usize = 1_500;

/// 64 slots per CPU (a page), for about 3,000 IPv6 VIPs the generator picks.
const CONFIG: &str = r#"
interfaces = ["lo"]
sparse_vip_capacity = 32

[[range]]
name = "web"
cidr = "192.0.2.0/24"
allow = ["tcp/80", "tcp/443", "udp/53", "udp/5000-5100", "icmp"]

# Ranges inside "web": a /32 with a list of its own, a /26 without one, and a
# /30 inside that with another list.
[[range]]
name = "web_host"
cidr = "192.0.2.53/32"
allow = ["udp/53"]

[[range]]
name = "web_quarter"
cidr = "192.0.2.64/26"

[[range]]
name = "web_quarter_pair"
cidr = "192.0.2.100/30"
allow = ["tcp/22", "icmp"]

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
vips = ["2001:db8:1::7"]

[[range]]
name = "open6"
cidr = "2001:db8:2::/64"
vips = ["2001:db8:2::1", "2001:db8:2::2", "2001:db8:2::100", "2001:db8:2:0:8000::7"]

[[range]]
name = "none6"
cidr = "2001:db8:3::/64"
allow = []
learn = false

[[range]]
name = "plain6"
cidr = "2001:db8:4::/64"

[[range]]
name = "dense6"
cidr = "2001:db8:5::100/120"
allow = ["tcp/80", "udp/53"]

[[range]]
name = "pair6a"
cidr = "2001:db8:6::10/124"

[[range]]
name = "pair6b"
cidr = "2001:db8:6::40/126"
allow = ["udp/5000-5100"]

[[range]]
name = "whole6"
cidr = "2001:db8:7::/112"

# Dense ranges inside sparse ones: a /120 and a /128 in "v6" (beside its
# declared VIP), a whole block in "plain6", and a /124 inside "whole6".
[[range]]
name = "v6_in"
cidr = "2001:db8:1::100/120"
allow = ["tcp/22"]

[[range]]
name = "v6_host"
cidr = "2001:db8:1::8/128"

[[range]]
name = "plain6_block"
cidr = "2001:db8:4::5:0/112"
allow = ["udp/53"]

[[range]]
name = "whole6_in"
cidr = "2001:db8:7::40/124"
allow = ["icmp"]
"#;

/// Reads the counters the oracle names, summed over CPUs.
struct Probe<'a> {
    datapath: &'a Loaded,
    layout: &'a Layout,
    config: &'a Config,
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

    /// The counts of a VIP with a slot of its own for all time: every VIP of
    /// a dense range, a declared VIP of a sparse one.
    fn dense_vip(&self, range: usize, vip: IpAddr) -> Option<Verdicts> {
        let owner = &self.layout.ranges[range];
        let index = match vip {
            _ if owner.value.per_vip_mode != PER_VIP_DENSE => {
                owner.declared_slots().find(|(addr, _)| *addr == vip)?.1
            }
            IpAddr::V4(v4) => {
                owner.value.dense_base + (u32::from(v4) - owner.value.network_v4_host)
            }
            // A dense IPv6 range lies in one /112: by the address's last
            // four bytes.
            IpAddr::V6(v6) => owner
                .value
                .dense_base
                .wrapping_add((u128::from(v6) as u32).wrapping_sub(owner.value.network_v4_host)),
        };
        let table = &self.datapath.maps().tables().dense;
        let mut total = Verdicts::default();
        for cpu in 0..table.cpus() {
            total.merge(&table.get(cpu, index));
        }
        Some(total)
    }

    /// This CPU's (CPU 0's) row of range `range_id` in `MAP_RANGE_COUNTS`.
    fn range_cpu0(&self, range_id: u32) -> RangeCounts {
        self.datapath.maps().tables().ranges.get(0, range_id)
    }

    /// The value of the counter `key` names, where one counter holds it: not
    /// for a VIP of the sparse table, which the model checks.
    fn read(&self, key: Key) -> Option<u64> {
        match key {
            Key::Accepted { range, vip } => Some(self.dense_vip(range, vip)?.accepted.packets),
            Key::Dropped { range, vip } => Some(self.dense_vip(range, vip)?.dropped.packets),
            Key::NonVip => Some(self.globals()[GLOBAL_NON_VIP as usize]),
            Key::Malformed => Some(self.globals()[GLOBAL_MALFORMED as usize]),
        }
    }

    /// After a packet to `vip` of sparse range `range` with no slot of its own
    /// for all time: counts it in the model, and checks that the datapath
    /// counted it in the same place, with the same result.
    fn check_sparse(
        &self,
        model: &mut SparseModel,
        range: usize,
        vip: IpAddr,
        bytes: u64,
        drop: bool,
    ) -> Result<(), String> {
        let owner = &self.layout.ranges[range].value;
        if !self.config.ranges[range].learn {
            model.unlearned(owner.range_id, bytes, drop);
            let got = self.range_cpu0(owner.range_id).pressure;
            let want = model.pressure[&owner.range_id];
            return (got == want)
                .then_some(())
                .ok_or(format!("unlearned: {got:?}, the model has {want:?}"));
        }
        let counted = model.count(VipAddr::from_ip(vip), owner, bytes, drop);
        match counted {
            Counted::Row(index) => {
                let got = self.datapath.maps().tables().sparse.get(0, index as u32);
                let want = model.slots[index];
                (got == want)
                    .then_some(())
                    .ok_or(format!("slot {index}: {got:?}, the model has {want:?}"))
            }
            Counted::Overflow => {
                let got = self.range_cpu0(owner.range_id).stats;
                let want = model.overflow[&owner.range_id];
                (got.sparse_overflow == want).then_some(()).ok_or(format!(
                    "overflow: {:?}, the model has {want:?}",
                    got.sparse_overflow
                ))
            }
        }
    }

    /// The whole of CPU 0's table, and every sparse range's pressure and
    /// overflow, against the model.
    fn check_table(&self, model: &SparseModel) -> Result<(), String> {
        let table = &self.datapath.maps().tables().sparse;
        for (index, want) in model.slots.iter().enumerate() {
            let got = table.get(0, index as u32);
            if got != *want {
                return Err(format!("slot {index}: {got:?}, the model has {want:?}"));
            }
        }
        for slot in &self.layout.ranges {
            if slot.value.per_vip_mode == PER_VIP_DENSE {
                continue;
            }
            let id = slot.value.range_id;
            let got = self.range_cpu0(id).pressure;
            let want = model.pressure.get(&id).copied().unwrap_or_default();
            if got != want {
                return Err(format!(
                    "{} pressure: {got:?}, the model has {want:?}",
                    slot.name
                ));
            }
            let got = self.range_cpu0(id).stats.sparse_overflow;
            let want = model.overflow.get(&id).copied().unwrap_or_default();
            if got != want {
                return Err(format!(
                    "{} overflow: {got:?}, the model has {want:?}",
                    slot.name
                ));
            }
        }
        Ok(())
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

    // The sparse table is per CPU: every run here must be on CPU 0, the model's.
    fixture::pin_to_cpu0();
    let config = Config::parse(CONFIG, Path::new("differential")).unwrap();
    let layout = Layout::new(&config);
    // The sparse table's key from the seed too, so that the seed replays where
    // each VIP lands.
    let mut datapath = fixture::load_with_hash(CONFIG, SPARSE_HASH_MULTIPLY, seed | 1);
    let mut model = SparseModel::new(
        layout.sparse_slots as usize,
        fixture::sparse_control(&datapath),
        fixture::sparse_tag(&datapath),
    );
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
        if index % SWEEP_EVERY == 0 && index > 0 {
            datapath.sweep_sparse().unwrap();
            model.sweep();
        }
        if index % CHECK_EVERY == 0 && index > 0 {
            let probe = Probe {
                datapath: &datapath,
                layout: &layout,
                config: &config,
            };
            if let Err(e) = probe.check_table(&model) {
                panic!("after packet {index} (seed {seed}): {e}");
            }
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
                config: &config,
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
                config: &config,
            };
            let (key_after, globals_after) = (probe.read(want.key), probe.globals());
            let counted = match (want.key, key_before) {
                (Key::Accepted { range, vip } | Key::Dropped { range, vip }, None) => probe
                    .check_sparse(&mut model, range, vip, frame.len() as u64, want.drop)
                    .map_err(|e| format!("sparse table: {e}")),
                (_, Some(before)) if key_after == Some(before + 1) => Ok(()),
                _ => Err(format!("counter {key_before:?} -> {key_after:?}")),
            };
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
                && counted.is_ok()
                && fragments == u64::from(want.fragment)
                && moved_globals == want_globals;
            assert!(
                agrees,
                "packet {index} (seed {seed}) through {program:?}: verdict {verdict:?}, {counted:?}, \
                 fragments +{fragments}, globals +{moved_globals}; the reference says {want:?}\n{}",
                hex(&frame)
            );
        }
    }
    let probe = Probe {
        datapath: &datapath,
        layout: &layout,
        config: &config,
    };
    if let Err(e) = probe.check_table(&model) {
        panic!("at the end (seed {seed}): {e}");
    }
    let pressure: RangePressure =
        model
            .pressure
            .values()
            .fold(RangePressure::default(), |mut all, p| {
                all.merge(p);
                all
            });
    println!("differential: {packets} packets agreed through XDP and TC: {tally:?}; sparse table: {pressure:?}");
    // A bound on what the run exercised, not on the datapath: reclaims depend
    // on the seed (the frames and the hash key). Seven runs of 200,000 packets
    // reclaimed 75 to 116 slots; 75 failed the old bound of 80 in CI.
    assert!(
        pressure.slots_reclaimed > packets as u64 / 10_000
            && pressure.unlearned.dropped.packets > packets as u64 / 100,
        "the run reclaims slots and meets a range that does not learn: {pressure:?}"
    );
    let overflow: u64 = model
        .overflow
        .values()
        .map(|v| v.accepted.packets + v.dropped.packets)
        .sum();
    assert!(
        overflow > packets as u64 / 100,
        "the run overflows the table: {overflow}"
    );
    for kind in ["accepted", "dropped", "non-VIP", "malformed"] {
        assert!(
            tally.get(kind).copied().unwrap_or(0) > packets as u64 / 50,
            "the generator covers {kind}: {tally:?}"
        );
    }
}
