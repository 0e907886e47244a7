//! BPF_PROG_TEST_RUN timing of `vip_xdp` beside an empty XDP program, in one run.

use std::{fmt::Write, net::IpAddr, path::PathBuf};

use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf,
};

use crate::{fixture, packets::FrameSpec};

/// A config with `ranges` ranges: `web` 192.0.2.0/24 first, then `web6`
/// 2001:db8::/64, then fillers: IPv4 /32s in 198.51.100.0/24 and 203.0.113.0/24
/// (at most 512), then IPv6 /64s in 2001:db8::/32.
pub fn config(ranges: usize) -> String {
    let mut text = String::from("interfaces = [\"lo\"]\n");
    let mut add = |name: String, cidr: String| {
        let _ = write!(text, "[[range]]\nname = \"{name}\"\ncidr = \"{cidr}\"\n");
    };
    add("web".into(), "192.0.2.0/24".into());
    if ranges >= 2 {
        add("web6".into(), "2001:db8::/64".into());
    }
    let fillers = ranges.saturating_sub(2);
    let v4_fillers = fillers.min(512).min(fillers / 2 + fillers % 2);
    for i in 0..v4_fillers {
        let block = if i < 256 { "198.51.100" } else { "203.0.113" };
        add(format!("f4-{i}"), format!("{block}.{}/32", i % 256));
    }
    for i in 0..fillers - v4_fillers {
        add(format!("f6-{i}"), format!("2001:db8:0:{:x}::/64", i + 1));
    }
    text
}

pub fn baseline_object() -> PathBuf {
    std::env::var_os("VIP_BASELINE_OBJ")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/bpfel-unknown-none/release/vip-baseline")
        })
}

/// The empty XDP_PASS program.
pub fn load_baseline() -> Ebpf {
    let path = baseline_object();
    let mut ebpf = Ebpf::load_file(&path).unwrap_or_else(|e| {
        panic!(
            "loading {} (build with cargo xtask build): {e}",
            path.display()
        )
    });
    let program: &mut Xdp = ebpf
        .program_mut("baseline_pass")
        .expect("baseline_pass in the baseline object")
        .try_into()
        .expect("an XDP program");
    program.load().expect("loading baseline_pass");
    ebpf
}

/// Mean ns per run of `program` over `repeat` runs of `frame`, as the kernel times it.
pub fn time_xdp(program: &Xdp, frame: &[u8], repeat: u32) -> f64 {
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(result.return_value, 2, "XDP_PASS");
    // The kernel reports the mean duration of one run, in ns.
    result.duration.as_nanos() as f64
}

pub fn frame_to(dst: IpAddr) -> Vec<u8> {
    FrameSpec::udp(dst, 53).frame_len(64).build()
}

pub struct Measurement {
    pub ranges: usize,
    pub family: &'static str,
    pub vip_ns: Vec<f64>,
    pub baseline_ns: Vec<f64>,
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

impl Measurement {
    pub fn ratio(&self) -> f64 {
        median(&self.vip_ns) / median(&self.baseline_ns)
    }
}

/// Measures one (ranges, destination) point: `runs` interleaved pairs of
/// baseline and vip_xdp timings, checking that vip counted every packet.
pub fn measure(
    ranges: usize,
    dst: IpAddr,
    family: &'static str,
    runs: usize,
    repeat: u32,
) -> Measurement {
    let mut datapath = fixture::load(&config(ranges));
    let baseline = load_baseline();
    let baseline: &Xdp = baseline
        .program("baseline_pass")
        .expect("baseline_pass")
        .try_into()
        .expect("XDP");
    let frame = frame_to(dst);
    let before = fixture::snapshot(&datapath);
    let mut m = Measurement {
        ranges,
        family,
        vip_ns: Vec::new(),
        baseline_ns: Vec::new(),
    };
    for _ in 0..runs {
        m.baseline_ns.push(time_xdp(baseline, &frame, repeat));
        m.vip_ns
            .push(time_xdp(datapath.xdp().expect("vip_xdp"), &frame, repeat));
    }
    let deltas = fixture::deltas(&before, &fixture::snapshot(&datapath));
    let counted = deltas.vips.get(&dst).copied().unwrap_or_default();
    assert_eq!(
        (counted.packets, counted.bytes),
        (
            runs as u64 * u64::from(repeat),
            runs as u64 * u64::from(repeat) * 64
        ),
        "vip_xdp counted every timed packet to {dst}"
    );
    m
}
