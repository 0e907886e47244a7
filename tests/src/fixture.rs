//! BPF_PROG_TEST_RUN fixtures: run one frame through a datapath loaded in this
//! process and return the verdict and exactly what every counter did.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use aya::programs::{TestRun, TestRunOptions};
use vip_userspace::{
    stats::{self, GlobalReport, Report},
    Config, Layout, Loaded,
};

/// Loads (but does not attach) the datapath vip embeds, for `config_toml`.
pub fn load(config_toml: &str) -> Loaded {
    load_object(vip_userspace::datapath::embedded_object(), config_toml)
}

/// [`load`] of another build of the datapath object (the bench's).
pub fn load_object(object: &[u8], config_toml: &str) -> Loaded {
    let config = Config::parse(config_toml, Path::new("fixture")).expect("fixture config is valid");
    Loaded::load_object(object, &Layout::new(&config), &config.interfaces).expect("datapath loads")
}

/// [`load`] with the sparse table on `hash_kind` (`vip_common::SPARSE_HASH_*`)
/// under `hash_key`, where [`load`] draws a key.
pub fn load_with_hash(config_toml: &str, hash_kind: u32, hash_key: u64) -> Loaded {
    let config = Config::parse(config_toml, Path::new("fixture")).expect("fixture config is valid");
    Loaded::load_object_with_hash(
        vip_userspace::datapath::embedded_object(),
        &Layout::new(&config),
        &config.interfaces,
        hash_kind,
        hash_key,
    )
    .expect("datapath loads")
}

/// Counter changes caused by one run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deltas {
    pub global: GlobalReport,
    /// Range name -> its counters' change, only ranges that moved.
    pub ranges: BTreeMap<String, Moved>,
    /// VIP -> its counters' change, only VIPs that moved.
    pub vips: BTreeMap<IpAddr, Moved>,
}

/// How a range's or a VIP's counters moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub packets: u64,
    pub bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    /// Ranges only.
    pub overflow_packets: u64,
    /// Sparse ranges only: packets moved out of reclaimed rows, and packets
    /// to addresses the range does not learn.
    pub reclaimed_packets: u64,
    pub unlearned_packets: u64,
}

impl Moved {
    pub fn accepted(bytes: u64) -> Moved {
        Moved {
            packets: 1,
            bytes,
            ..Moved::default()
        }
    }

    pub fn dropped(bytes: u64) -> Moved {
        Moved {
            dropped_packets: 1,
            dropped_bytes: bytes,
            ..Moved::default()
        }
    }
}

/// Pins the calling thread (and the threads it spawns from now on) to `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    let mut mask = nix::sched::CpuSet::new();
    mask.set(cpu).expect("a CPU number");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &mask).expect("pinning to a CPU");
}

/// The CPUs the calling thread may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    let mask = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .expect("reading the CPU affinity");
    (0..nix::sched::CpuSet::count())
        .filter(|&cpu| mask.is_set(cpu).unwrap_or(false))
        .collect()
}

/// Lets the calling thread run on `cpus` (what [`allowed_cpus`] gave before
/// a pin).
pub fn allow_cpus(cpus: &[usize]) {
    let mut mask = nix::sched::CpuSet::new();
    for &cpu in cpus {
        mask.set(cpu).expect("a CPU number");
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &mask)
        .expect("restoring the CPU affinity");
}

/// Pins the calling thread to CPU 0, for tests of per-CPU tables:
/// BPF_PROG_TEST_RUN runs the program on the caller's CPU.
pub fn pin_to_cpu0() {
    pin_to_cpu(0);
}

/// The datapath's sparse table control entry: its hash and key.
pub fn sparse_control(datapath: &Loaded) -> vip_common::SparseControl {
    vip_userspace::datapath::sparse_control::read(datapath.maps())
        .expect("the sparse control entry")
}

/// The datapath's sparse tag word (`MAP_SPARSE_TAG`).
pub fn sparse_tag(datapath: &Loaded) -> u32 {
    array_entry(datapath, vip_common::MAP_SPARSE_TAG, 0)
}

/// Entry `index` of the datapath's array map `map`.
pub fn array_entry<T: aya::Pod>(datapath: &Loaded, map: &str, index: u32) -> T {
    let array: aya::maps::Array<_, T> =
        aya::maps::Array::try_from(datapath.maps().map(map).expect(map)).unwrap();
    array.get(&index, 0).unwrap()
}

/// Writes entry `index` of the datapath's array map `map`.
pub fn set_array_entry<T: aya::Pod>(datapath: &mut Loaded, map: &str, index: u32, value: T) {
    let mut array: aya::maps::Array<_, T> =
        aya::maps::Array::try_from(datapath.maps_mut().map_mut(map).expect(map)).unwrap();
    array.set(index, value, 0).unwrap();
}

pub fn snapshot(datapath: &Loaded) -> Report {
    stats::read(datapath.maps()).expect("reading counters")
}

/// Which entry point a fixture runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Xdp,
    Tc,
}

/// What a program decided, in common terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

impl Program {
    fn verdict(self, return_value: u32) -> Verdict {
        match (self, return_value) {
            (Program::Xdp, 2) | (Program::Tc, 0) => Verdict::Pass, // XDP_PASS, TC_ACT_OK
            (Program::Xdp, 1) | (Program::Tc, 2) => Verdict::Drop, // XDP_DROP, TC_ACT_SHOT
            (program, other) => panic!("{program:?} returned {other}"),
        }
    }
}

/// Runs `frame` once through one program; returns its verdict, or the kernel's
/// refusal to run it.
pub fn try_run_once(
    datapath: &mut Loaded,
    program: Program,
    frame: &[u8],
) -> Result<Verdict, aya::programs::ProgramError> {
    let options = TestRunOptions {
        data_in: Some(frame),
        ..TestRunOptions::default()
    };
    let result = match program {
        Program::Xdp => datapath.xdp().test_run(options),
        Program::Tc => datapath.tc().expect("vip_tc verifies").test_run(options),
    }?;
    Ok(program.verdict(result.return_value))
}

/// Runs `frame` once through one program; returns its verdict.
pub fn run_once(datapath: &mut Loaded, program: Program, frame: &[u8]) -> Verdict {
    try_run_once(datapath, program, frame).unwrap_or_else(|e| {
        panic!(
            "BPF_PROG_TEST_RUN of {program:?} refused a {}-byte frame: {e:?}\n{}",
            frame.len(),
            hex(frame)
        )
    })
}

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it: the frame arriving on
/// `ifindex` (which must exist in this namespace), queue 0.
pub fn xdp_md(frame_len: usize, ifindex: u32) -> [u8; 24] {
    let fields: [u32; 6] = [0, frame_len as u32, 0, ifindex, 0, 0];
    let mut out = [0u8; 24];
    for (chunk, field) in out.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field.to_ne_bytes());
    }
    out
}

/// Runs `frame` once through the XDP program as if it arrived on `ifindex`;
/// returns the verdict, the frame as the program left it, and the counter deltas.
pub fn run_xdp_on(datapath: &mut Loaded, ifindex: u32, frame: &[u8]) -> (Verdict, Vec<u8>, Deltas) {
    let before = snapshot(datapath);
    let ctx = xdp_md(frame.len(), ifindex);
    let mut out = vec![0u8; frame.len() + 256];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        ..TestRunOptions::default()
    };
    let result = datapath
        .xdp()
        .test_run(options)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN refused {}: {e:?}", hex(frame)));
    out.truncate(result.data_size_out as usize);
    let after = snapshot(datapath);
    (
        Program::Xdp.verdict(result.return_value),
        out,
        deltas(&before, &after),
    )
}

/// Runs `frame` once; returns the verdict and exactly what every counter did.
pub fn run(datapath: &mut Loaded, program: Program, frame: &[u8]) -> (Verdict, Deltas) {
    let before = snapshot(datapath);
    let verdict = run_once(datapath, program, frame);
    let after = snapshot(datapath);
    (verdict, deltas(&before, &after))
}

pub fn deltas(before: &Report, after: &Report) -> Deltas {
    let g = |f: fn(&GlobalReport) -> u64| f(&after.global) - f(&before.global);
    let mut out = Deltas {
        global: GlobalReport {
            packets: g(|g| g.packets),
            non_vip_packets: g(|g| g.non_vip_packets),
            malformed_packets: g(|g| g.malformed_packets),
            internal_errors: g(|g| g.internal_errors),
            fragments: g(|g| g.fragments),
            decapsulated: stats::Decapsulated {
                ipip: g(|g| g.decapsulated.ipip),
                ip6ip6: g(|g| g.decapsulated.ip6ip6),
                gue: g(|g| g.decapsulated.gue),
            },
        },
        ..Deltas::default()
    };
    for range in &after.ranges {
        let old = before.range(&range.name).expect("ranges do not change");
        let moved = Moved {
            packets: range.packets - old.packets,
            bytes: range.bytes - old.bytes,
            dropped_packets: range.dropped_packets - old.dropped_packets,
            dropped_bytes: range.dropped_bytes - old.dropped_bytes,
            overflow_packets: range.sparse_overflow_packets - old.sparse_overflow_packets,
            reclaimed_packets: pressure(range, |p| p.reclaimed_packets)
                - pressure(old, |p| p.reclaimed_packets),
            unlearned_packets: pressure(range, |p| p.unlearned_packets)
                - pressure(old, |p| p.unlearned_packets),
        };
        if moved != Moved::default() {
            out.ranges.insert(range.name.clone(), moved);
        }
        for vip in &range.vips {
            let zero = stats::VipReport {
                addr: vip.addr,
                packets: 0,
                bytes: 0,
                dropped_packets: 0,
                dropped_bytes: 0,
                declared: vip.declared,
            };
            let was = old.vip(vip.addr).unwrap_or(&zero);
            let moved = Moved {
                packets: vip.packets - was.packets,
                bytes: vip.bytes - was.bytes,
                dropped_packets: vip.dropped_packets - was.dropped_packets,
                dropped_bytes: vip.dropped_bytes - was.dropped_bytes,
                ..Moved::default()
            };
            if moved != Moved::default() {
                out.vips.insert(vip.addr, moved);
            }
        }
    }
    out
}

fn pressure(range: &stats::RangeReport, value: fn(&stats::SparsePressure) -> u64) -> u64 {
    range.sparse.as_ref().map_or(0, value)
}

/// A frame as hex, 16 bytes a line.
pub fn hex(frame: &[u8]) -> String {
    frame
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
