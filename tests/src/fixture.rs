//! BPF_PROG_TEST_RUN fixtures: run one frame through a datapath loaded in this
//! process and return the verdict and exactly what every counter did.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use aya::programs::{TestRun, TestRunOptions};
use vip_userspace::{
    stats::{self, GlobalReport, Report},
    Config, Datapath, Layout,
};

/// Loads (but does not attach) a datapath for `config_toml`.
pub fn load(config_toml: &str) -> Datapath {
    let config = Config::parse(config_toml, Path::new("fixture")).expect("fixture config is valid");
    Datapath::load(&Layout::new(&config), 0).expect("datapath loads")
}

/// Counter changes caused by one run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deltas {
    pub global: GlobalReport,
    /// Range name -> (packets, bytes, sparse overflow packets), only ranges that moved.
    pub ranges: BTreeMap<String, (u64, u64, u64)>,
    /// VIP -> (packets, bytes), only VIPs that moved.
    pub vips: BTreeMap<IpAddr, (u64, u64)>,
}

pub fn snapshot(datapath: &Datapath) -> Report {
    stats::read(datapath.ebpf()).expect("reading counters")
}

/// Runs `frame` once through `vip_xdp`; returns the XDP verdict and the deltas.
pub fn run_xdp(datapath: &mut Datapath, frame: &[u8]) -> (u32, Deltas) {
    let before = snapshot(datapath);
    let result = datapath
        .xdp()
        .expect("xdp program")
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    let after = snapshot(datapath);
    (result.return_value, deltas(&before, &after))
}

pub fn deltas(before: &Report, after: &Report) -> Deltas {
    let g = |f: fn(&GlobalReport) -> u64| f(&after.global) - f(&before.global);
    let mut out = Deltas {
        global: GlobalReport {
            packets: g(|g| g.packets),
            non_vip_packets: g(|g| g.non_vip_packets),
            malformed_packets: g(|g| g.malformed_packets),
            internal_errors: g(|g| g.internal_errors),
        },
        ..Deltas::default()
    };
    for range in &after.ranges {
        let old = before.range(&range.name).expect("ranges do not change");
        let delta = (
            range.packets - old.packets,
            range.bytes - old.bytes,
            range.sparse_overflow_packets - old.sparse_overflow_packets,
        );
        if delta != (0, 0, 0) {
            out.ranges.insert(range.name.clone(), delta);
        }
        for vip in &range.vips {
            let (p, b) = old.vip(vip.addr).map_or((0, 0), |v| (v.packets, v.bytes));
            if (vip.packets - p, vip.bytes - b) != (0, 0) {
                out.vips.insert(vip.addr, (vip.packets - p, vip.bytes - b));
            }
        }
    }
    out
}
