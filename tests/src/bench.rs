//! BPF_PROG_TEST_RUN timing of `vip_xdp` beside an empty XDP program, in one run.

use std::{fmt::Write, net::IpAddr, path::PathBuf};

use aya::{
    maps::{Array, PerCpuArray},
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};

use vip_common::{
    port_bitmap_index, sparse_hash_multiply, PortBitmap, SparseSlot, Verdicts, VipAddr,
    FLOOR_V4_VIPS, FLOOR_V6_MULTIPLIERS, FLOOR_V6_SLOTS_PER_CPU, MAP_BENCH_FLOOR_DECAP,
    MAP_FLOOR_V4_PORTS, MAP_FLOOR_V4_SLOTS, MAP_FLOOR_V6_SLOTS, PORT_BITMAP_WORDS,
    PROG_BENCH_DECAP, PROG_BENCH_FLOOR_DECAP, PROG_BENCH_HARNESS,
};
use vip_userspace::{stats::Report, Loaded};

use crate::{
    fixture::{self, Verdict},
    packets::FrameSpec,
    tunnel::{encapsulate, Tunnel},
};

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
    let v4_fillers = v4_fillers(fillers);
    for i in 0..v4_fillers {
        let block = if i < 256 { "198.51.100" } else { "203.0.113" };
        add(format!("f4-{i}"), format!("{block}.{}/32", i % 256));
    }
    for i in 0..fillers - v4_fillers {
        add(format!("f6-{i}"), format!("2001:db8:0:{:x}::/64", i + 1));
    }
    text
}

/// [`config`] with 2001:db8::7 declared in `web6` (`ranges` at least 2).
fn declaring_config(ranges: usize) -> String {
    declaring_many_config(ranges, 0)
}

/// [`declaring_config`] with `learn = false` on `web6`: its other addresses
/// (a scan's) take no slot and count in its `unlearned_packets`.
fn not_learning_config(ranges: usize) -> String {
    let text = declaring_config(ranges);
    let declared = "vips = [\"2001:db8::7\"]\n";
    assert!(text.contains(declared), "web6 declares 2001:db8::7");
    text.replacen(declared, &format!("{declared}learn = false\n"), 1)
}

/// Declared VIPs of [`declaring_many_config`]'s `web6` beside 2001:db8::7
/// that fill the IPv6 index to just under the quarter a fresh datapath's
/// sizing allows, with the entries of the config's sparse IPv6 ranges by
/// their /64 (`web6` and the IPv6 fillers, each alone in its /64): 4 entries
/// each, plus 64, make a power of two, 16,384 where they fit under it (the
/// placement unit test in vip-userspace's layout/v6_blocks.rs takes the same
/// VIPs and ranges for 100 ranges).
pub fn many_declared(ranges: usize) -> usize {
    let by_64 = 1 + ipv6_fillers(ranges);
    let mut len = 16_384;
    while 4 * (by_64 + 1) + 64 > len {
        len *= 2;
    }
    (len - 64) / 4 - by_64 - 1
}

/// How many IPv6 /64 fillers [`config`] has for `ranges`.
fn ipv6_fillers(ranges: usize) -> usize {
    let fillers = ranges.saturating_sub(2);
    fillers - v4_fillers(fillers)
}

fn v4_fillers(fillers: usize) -> usize {
    fillers.min(512).min(fillers / 2 + fillers % 2)
}

/// [`config`] with 2001:db8::7 and `more` others (from 2001:db8::1:0 on)
/// declared in `web6` (`ranges` at least 2).
fn declaring_many_config(ranges: usize, more: usize) -> String {
    let web6 = "cidr = \"2001:db8::/64\"\n";
    let text = config(ranges);
    assert!(
        text.contains(web6),
        "web6 is in configs of 2 ranges or more"
    );
    let vips: Vec<String> = std::iter::once("\"2001:db8::7\"".to_string())
        .chain((0..more).map(|i| format!("\"2001:db8::1:{i:x}\"")))
        .collect();
    text.replacen(web6, &format!("{web6}vips = [{}]\n", vips.join(", ")), 1)
}

pub fn baseline_object() -> PathBuf {
    std::env::var_os("VIP_BASELINE_OBJ")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/bpfel-unknown-none/release/vip-baseline")
        })
}

/// The datapath object with the bench-only programs (`cargo xtask bench`
/// builds it with vip-ebpf's `bench` feature): vip_xdp as vip embeds it, plus
/// the frame-restoring harness.
pub fn bench_object() -> Vec<u8> {
    let path = std::env::var_os("VIP_EBPF_BENCH_OBJ")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/ebpf-bench/bpfel-unknown-none/release/vip-ebpf")
        });
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading the bench object {} (build it with cargo xtask bench): {e}",
            path.display()
        )
    })
}

/// The port the denied-port floor's list allows (TCP), as the bench's
/// denied-port case's list does.
const FLOOR_ALLOWED_TCP_PORT: u16 = 80;

/// The empty XDP programs, `baseline_pass` and `baseline_drop`,
/// `baseline_adjust_head` (the empty program plus one `bpf_xdp_adjust_head`
/// call) and the floors `floor_v4_count`, `floor_v4_port` (its list allowing
/// TCP port 80) and `floor_v6_count`, loaded.
pub fn load_baselines() -> Ebpf {
    let path = baseline_object();
    let cpus = aya::util::nr_cpus().expect("CPU count") as u32;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_FLOOR_V4_SLOTS, FLOOR_V4_VIPS * cpus)
        .map_max_entries(MAP_FLOOR_V6_SLOTS, FLOOR_V6_SLOTS_PER_CPU * cpus)
        .load_file(&path)
        .unwrap_or_else(|e| {
            panic!(
                "loading {} (build with cargo xtask build): {e}",
                path.display()
            )
        });
    for name in [
        "baseline_pass",
        "baseline_drop",
        "baseline_adjust_head",
        "floor_v4_count",
        "floor_v4_port",
        "floor_v6_count",
    ] {
        let program: &mut Xdp = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("{name} in the baseline object"))
            .try_into()
            .expect("an XDP program");
        program
            .load()
            .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    }
    allow_on_floor(&mut ebpf, false, FLOOR_ALLOWED_TCP_PORT);
    ebpf
}

/// Mean ns per run of `program` over `repeat` runs of `frame`; checks the
/// program's verdict.
///
/// Timed as this thread's CPU time over the BPF_PROG_TEST_RUN call, divided by
/// `repeat`, rather than by the kernel's own figure, which it truncates to
/// whole ns: a difference of two such figures is off by up to 1 ns either
/// way, the size of the margins the targets turn on. Like the kernel's timer,
/// this CPU time leaves out the time the thread is scheduled away. It also
/// holds the call's own work outside the timed loop: 0.2 to 0.3 ms on the AMD
/// EPYC of family 25 model 17 (measured at 1,000 to 100,000 repetitions),
/// varying by some 30 us from call to call. At the default 2,000,000
/// repetitions that is 0.1 to 0.15 ns a run, within about 0.02 ns between two
/// programs, so a difference keeps its value and a ratio moves by under 1%;
/// at a few thousand repetitions it swamps the programs. Each timing is
/// checked against the kernel's figure ([`CLOCKS_AGREE_NS`], [`SET_UP_NS`]).
pub fn time_xdp(program: &Xdp, frame: &[u8], repeat: u32, verdict: Verdict) -> f64 {
    // Arriving on lo (ifindex 1 in every namespace): where the fixtures' configs
    // decapsulate.
    let ctx = fixture::xdp_md(frame.len(), 1);
    let cpu_before = thread_cpu_ns();
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    let want = match verdict {
        Verdict::Pass => 2, // XDP_PASS
        Verdict::Drop => 1, // XDP_DROP
    };
    assert_eq!(result.return_value, want, "{verdict:?}");
    let ns = thread_cpu_ns().saturating_sub(cpu_before) as f64 / f64::from(repeat);
    // Both clocks time the same loop: the kernel's figure is the whole ns below
    // it, less only the call's set-up.
    let kernel_ns = result.duration.as_nanos() as f64;
    let tolerance = CLOCKS_AGREE_NS.max(kernel_ns / 10.0) + SET_UP_NS / f64::from(repeat);
    assert!(
        (ns - kernel_ns).abs() <= tolerance,
        "the thread's CPU time ({ns:.2} ns a run) and the kernel's figure ({kernel_ns} ns) disagree"
    );
    ns
}

/// How far the CPU-time figure may sit from the kernel's truncated one, per
/// run: its truncation (under 1 ns), and interrupt time that one clock counts
/// and the other may not; plus [`SET_UP_NS`] shared over the repetitions.
const CLOCKS_AGREE_NS: f64 = 2.0;
/// The most one BPF_PROG_TEST_RUN call's work outside its timed loop may add
/// to the CPU time, in ns: several times the 0.2 to 0.3 ms seen.
const SET_UP_NS: f64 = 1_500_000.0;

/// This thread's CPU time, in ns.
fn thread_cpu_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    std::time::Duration::from(now).as_nanos() as u64
}

/// One bench point: a config, a 64-byte frame, and what vip must do with it.
pub struct Case {
    pub label: String,
    pub family: &'static str,
    pub ranges: usize,
    pub config: String,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub verdict: Verdict,
    /// The frame comes in IPIP; it is timed through `PROG_BENCH_DECAP`, in a
    /// harness whose own cost (`PROG_BENCH_HARNESS`) is taken out.
    pub tunnelled: bool,
    /// Another config timed in the same run on the same frame, which the case
    /// is compared with as well as with the empty program: the same range
    /// without an allow list, for the allow-list cases.
    pub reference: Option<String>,
    /// The floor to time on the frame in each run, if the case has one.
    pub floor: Option<Floor>,
    /// The floor of `reference` (the same frame without a list), timed in
    /// each run too: what the floor adds over it is what any allow list costs.
    pub floor_reference: Option<Floor>,
    /// Where vip_xdp counts the frame.
    pub counted_as: CountedAs,
}

/// Where a case's frame is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountedAs {
    /// In the row of `dst`, a VIP.
    Vip,
    /// In the `unlearned_packets` of the range (by name), with no VIP row:
    /// `dst` is an address of a range that does not learn.
    Unlearned(&'static str),
    /// In the global non-VIP count: `dst` lies in no range.
    NonVip,
}

/// The least a program can do for a case's frame, counted exactly like vip
/// counts it (see each program's doc comment), timed in the same runs: what
/// vip adds over it is vip's own cost, and what it adds over the target's
/// baseline is what no program doing the case's job can avoid on this CPU.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// vip-baseline's `floor_v4_count`.
    V4Hit,
    /// vip-baseline's `floor_v4_port`, the frame's port not in its list.
    V4DeniedPort,
    /// vip-baseline's `floor_v4_port`, the frame's UDP port in its list.
    V4AllowedPort,
    /// vip-baseline's `floor_v6_count`.
    V6Hit,
    /// The bench object's `bench_floor_decap`, in the decap harness.
    Decap,
}

impl Floor {
    pub fn program(self) -> &'static str {
        match self {
            Floor::V4Hit => "floor_v4_count",
            Floor::V4DeniedPort | Floor::V4AllowedPort => "floor_v4_port",
            Floor::V6Hit => "floor_v6_count",
            Floor::Decap => PROG_BENCH_FLOOR_DECAP,
        }
    }

    /// What the floor does, for the bench's table.
    pub fn describe(self) -> &'static str {
        match self {
            Floor::V4Hit => {
                "the IPv4 floor: ethertype and a fixed /24 checked, this CPU's slot of the last \
                 octet counted, XDP_PASS"
            }
            Floor::V4DeniedPort => {
                "the denied-port floor: the IPv4 floor's checks, the UDP port's bit tested in a \
                 list's port bitmap (one lookup), counted dropped, XDP_DROP"
            }
            Floor::V4AllowedPort => {
                "the allowed-port floor: the IPv4 floor's checks, the UDP port's bit found in a \
                 list's port bitmap (one lookup), counted accepted, XDP_PASS"
            }
            Floor::V6Hit => {
                "the IPv6 floor: ethertype checked, vip's keyed multiply hash, one slot of this \
                 CPU's table, the address compared, counted, XDP_PASS"
            }
            Floor::Decap => {
                "the decap floor: outer and inner IPv4 headers checked, the inner VIP's per-CPU \
                 slot counted, bpf_xdp_adjust_head, the Ethernet header rewritten, XDP_PASS; \
                 timed in the decap harness like vip_xdp"
            }
        }
    }
}

impl Case {
    /// A UDP frame to port 53 of a VIP with `ranges` ranges configured.
    pub fn ranges(ranges: usize, dst: IpAddr, family: &'static str) -> Case {
        Case {
            label: format!("{ranges} range(s), {family}"),
            family,
            ranges,
            config: config(ranges),
            dst,
            dst_port: 53,
            verdict: Verdict::Pass,
            tunnelled: false,
            reference: None,
            floor: Some(if family == "IPv4" {
                Floor::V4Hit
            } else {
                Floor::V6Hit
            }),
            floor_reference: None,
            counted_as: CountedAs::Vip,
        }
    }

    /// A UDP frame to port 53 of a VIP of one dense IPv6 range (a /112, in
    /// the IPv6 dense index), beside `ranges` ranges as [`Case::ranges`] has.
    /// Its floor is the IPv6 one, which counts any address.
    pub fn dense_v6(ranges: usize) -> Case {
        let dense = "[[range]]\nname = \"dense6\"\ncidr = \"2001:db8:ffff::/112\"\n";
        Case {
            label: format!("{ranges} range(s) and a dense /112, IPv6 to the /112"),
            config: format!("{}{dense}", config(ranges)),
            ..Case::ranges(ranges, "2001:db8:ffff::7".parse().unwrap(), "IPv6")
        }
    }

    /// A UDP frame to port 53 of a declared VIP (`vips`) of the sparse IPv6
    /// range `web6`, beside `ranges` ranges as [`Case::ranges`] has: the
    /// scan-proof way to count a VIP (README, "Declared VIPs").
    pub fn declared_v6(ranges: usize) -> Case {
        Case {
            label: format!("{ranges} range(s), IPv6 to a declared VIP"),
            config: declaring_config(ranges),
            ..Case::ranges(ranges, "2001:db8::7".parse().unwrap(), "IPv6")
        }
    }

    /// A UDP frame to port 53 of a VIP that `web6` learns beside its declared
    /// VIP (as [`Case::declared_v6`] has it).
    pub fn learned_beside_declared_v6(ranges: usize) -> Case {
        Case {
            label: format!(
                "{ranges} range(s), IPv6 to a learned VIP of a range with declared VIPs"
            ),
            config: declaring_config(ranges),
            ..Case::ranges(ranges, "2001:db8::8".parse().unwrap(), "IPv6")
        }
    }

    /// As [`Case::learned_beside_declared_v6`], with [`many_declared`] more
    /// declared VIPs in `web6`: the IPv6 index as full as declared VIPs may
    /// make it, which the learned VIP's probe by block crosses.
    pub fn learned_beside_many_declared_v6(ranges: usize) -> Case {
        let more = many_declared(ranges);
        Case {
            label: format!(
                "{ranges} range(s), IPv6 to a learned VIP of a range with {more} more declared VIPs"
            ),
            config: declaring_many_config(ranges, more),
            ..Case::learned_beside_declared_v6(ranges)
        }
    }

    /// A UDP frame to port 53 of an address `web6` does not learn (`learn =
    /// false`, 2001:db8::7 declared), beside `ranges` ranges as
    /// [`Case::ranges`] has: what each packet of a scan of a range that
    /// learns nothing costs. Its floor is the IPv6 one, which counts any
    /// address.
    pub fn unlearned_v6(ranges: usize) -> Case {
        Case {
            label: format!("{ranges} range(s), IPv6 to an address of a range that does not learn"),
            config: not_learning_config(ranges),
            counted_as: CountedAs::Unlearned("web6"),
            ..Case::ranges(ranges, "2001:db8::8".parse().unwrap(), "IPv6")
        }
    }

    /// A UDP frame to port 53 of `dst`, an address in no range, beside
    /// `ranges` ranges as [`Case::ranges`] has: what vip costs the host's
    /// other traffic. Passed, and counted only as to no VIP. No floor: the
    /// empty program does all such a packet needs.
    pub fn non_vip(ranges: usize, dst: IpAddr, family: &'static str) -> Case {
        Case {
            label: format!("{ranges} range(s), {family} to an address in no range"),
            floor: None,
            counted_as: CountedAs::NonVip,
            ..Case::ranges(ranges, dst, family)
        }
    }

    /// The 64-byte UDP frame to a VIP, in IPIP, decapsulated.
    pub fn decap() -> Case {
        Case {
            label: "decap: IPIP, 64-byte inner UDP frame".to_string(),
            config: format!("decap = [\"ipip\"]\n{}", config(1)),
            tunnelled: true,
            floor: Some(Floor::Decap),
            ..Case::ranges(1, "192.0.2.7".parse().unwrap(), "IPv4")
        }
    }

    /// The VIP's range has `allow`; the frame goes to `dst_port`. A frame the
    /// list lets through is also compared with the same frame to the range
    /// without a list, timed in the same run, and its floor with the IPv4
    /// floor.
    pub fn policy(label: &str, allow: &[String], dst_port: u16, verdict: Verdict) -> Case {
        let list = allow
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let web = "interfaces = [\"lo\"]\n[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\n";
        Case {
            label: label.to_string(),
            family: "IPv4",
            ranges: 1,
            config: format!("{web}allow = [{list}]\n"),
            dst: "192.0.2.7".parse().unwrap(),
            dst_port,
            verdict,
            tunnelled: false,
            reference: matches!(verdict, Verdict::Pass).then(|| web.to_string()),
            floor: Some(match verdict {
                Verdict::Pass => Floor::V4AllowedPort,
                Verdict::Drop => Floor::V4DeniedPort,
            }),
            floor_reference: matches!(verdict, Verdict::Pass).then_some(Floor::V4Hit),
            counted_as: CountedAs::Vip,
        }
    }
}

pub struct Measurement {
    pub case: Case,
    /// vip_xdp's time per run; for a tunnelled case, with the harness's own
    /// cost taken out: `harness.with_vip_ns - harness.alone_ns + baseline_ns`,
    /// run by run.
    pub vip_ns: Vec<f64>,
    pub baseline_ns: Vec<f64>,
    pub harness: Option<Harness>,
    /// The case's `reference` config, timed in each run.
    pub reference_ns: Option<Vec<f64>>,
    /// The case's floor, timed in each run (`Case::floor`); for the decap
    /// floor, with the harness's cost taken out like vip_xdp's.
    pub floor_ns: Option<Vec<f64>>,
    /// The case's `floor_reference`, timed in each run.
    pub floor_reference_ns: Option<Vec<f64>>,
}

/// A tunnelled case's raw timings: the frame-restoring harness around vip_xdp
/// (`PROG_BENCH_DECAP`), and around an empty program (`PROG_BENCH_HARNESS`).
pub struct Harness {
    pub with_vip_ns: Vec<f64>,
    pub alone_ns: Vec<f64>,
    /// The empty program plus one `bpf_xdp_adjust_head` call (`baseline_adjust_head`).
    pub adjust_head_ns: Vec<f64>,
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

impl Measurement {
    /// The median of the runs' ratios: each run's vip_xdp time over the empty
    /// program's, timed back to back on the same load.
    pub fn ratio(&self) -> f64 {
        let ratios: Vec<f64> = self
            .vip_ns
            .iter()
            .zip(&self.baseline_ns)
            .map(|(vip, empty)| vip / empty)
            .collect();
        median(&ratios)
    }

    /// The ns vip_xdp adds over the empty program, run by run (both timed
    /// back to back on the same load).
    pub fn added_ns(&self) -> Vec<f64> {
        self.vip_ns
            .iter()
            .zip(&self.baseline_ns)
            .map(|(vip, empty)| vip - empty)
            .collect()
    }

    /// What else the case is compared with, and the ns vip_xdp adds over it,
    /// run by run: the same frame to a range without an allow list, or for a
    /// tunnel, the empty program plus the one `bpf_xdp_adjust_head` call
    /// decapsulation makes (its cost differs tenfold between CPUs).
    pub fn added_over_reference(&self) -> Option<(&'static str, Vec<f64>)> {
        let (name, reference) = match (&self.reference_ns, &self.harness) {
            (Some(ns), _) => ("no allow list", ns),
            (None, Some(harness)) => ("empty + adjust_head", &harness.adjust_head_ns),
            (None, None) => return None,
        };
        let added = self.vip_ns.iter().zip(reference).map(|(v, r)| v - r);
        Some((name, added.collect()))
    }

    /// The ns vip_xdp adds over what its target is judged against, run by
    /// run: the empty program, or the case's second comparison.
    pub fn target_added_ns(&self) -> Vec<f64> {
        match self.added_over_reference() {
            Some((_, added)) => added,
            None => self.added_ns(),
        }
    }

    /// What the floor's added ns are over: the floor's counterpart of what
    /// the target is judged against.
    pub fn floor_base_name(&self) -> &'static str {
        match (&self.floor_reference_ns, &self.harness) {
            (Some(_), _) => "the IPv4 floor (`floor_v4_count`) on the same frame",
            (None, Some(_)) => "empty + adjust_head",
            (None, None) => self.baseline_name(),
        }
    }

    /// The ns the floor adds over its counterpart of what the case's target
    /// is judged against (the empty program; for decap, the empty program
    /// plus its `bpf_xdp_adjust_head` call; for an allowed port, the IPv4
    /// floor on the same frame), and the ns vip_xdp adds over the floor in
    /// the target's terms (its ns added less the floor's), run by run.
    pub fn floor_figures(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        let floor = self.floor_ns.as_ref()?;
        let base = match (&self.floor_reference_ns, &self.harness) {
            (Some(reference), _) => reference,
            (None, Some(harness)) => &harness.adjust_head_ns,
            (None, None) => &self.baseline_ns,
        };
        let floor_added: Vec<f64> = floor.iter().zip(base).map(|(f, b)| f - b).collect();
        let vip_over = self
            .target_added_ns()
            .iter()
            .zip(&floor_added)
            .map(|(v, f)| v - f)
            .collect();
        Some((floor_added, vip_over))
    }

    /// The empty program it is compared with: same verdict, no work.
    pub fn baseline_name(&self) -> &'static str {
        match self.case.verdict {
            Verdict::Pass => "empty XDP_PASS",
            Verdict::Drop => "empty XDP_DROP",
        }
    }
}

/// Measures one case: `runs` runs, each loading vip's datapath and the empty
/// programs afresh (where the kernel places a program's code moves its time by
/// 2 to 3 ns, so placement is sampled, not fixed for the whole case) and timing
/// them back to back. Checks, run by run, that vip counted every timed packet on
/// the right side, unless `counts` is [`Counts::Unchecked`].
pub fn measure(case: Case, runs: usize, repeat: u32, counts: Counts) -> Measurement {
    let inner = FrameSpec::udp(case.dst, case.dst_port)
        .frame_len(64)
        .build();
    let frame = if case.tunnelled {
        encapsulate(&inner, Tunnel::Ipip)
    } else {
        inner
    };
    let (mut vip_ns, mut baseline_ns, mut reference_ns) = (Vec::new(), Vec::new(), Vec::new());
    let (mut floor_ns, mut floor_reference_ns) = (Vec::new(), Vec::new());
    let mut harness = Harness {
        with_vip_ns: Vec::new(),
        alone_ns: Vec::new(),
        adjust_head_ns: Vec::new(),
    };
    let object = bench_object();
    for _ in 0..runs {
        let mut datapath = fixture::load_object(&object, &case.config);
        let mut baselines = load_baselines();
        if case.floor == Some(Floor::V4AllowedPort) {
            allow_on_floor(&mut baselines, true, case.dst_port);
        }
        let baselines = baselines;
        let program = |name: &str| -> &Xdp {
            baselines
                .program(name)
                .unwrap_or_else(|| panic!("{name} in the baseline object"))
                .try_into()
                .expect("an XDP program")
        };
        let baseline = program(match case.verdict {
            Verdict::Pass => "baseline_pass",
            Verdict::Drop => "baseline_drop",
        });
        if let Some(config) = &case.reference {
            let mut reference = fixture::load_object(&object, config);
            let before = fixture::snapshot(&reference);
            reference_ns.push(time_xdp(reference.xdp(), &frame, repeat, Verdict::Pass));
            let after = fixture::snapshot(&reference);
            if counts == Counts::Checked {
                check_counted(
                    &case.dst,
                    CountedAs::Vip,
                    Verdict::Pass,
                    false,
                    &before,
                    &after,
                    repeat,
                );
            }
        }
        let timed_floor = |floor: Floor| -> f64 {
            let before = floor_count(&baselines, floor, &case.dst);
            let ns = time_xdp(program(floor.program()), &frame, repeat, case.verdict);
            let counted = floor_count(&baselines, floor, &case.dst) - before;
            assert_eq!(
                counted,
                u64::from(repeat),
                "{} counted every timed packet to {}",
                floor.program(),
                case.dst
            );
            ns
        };
        if let Some(floor) = case.floor.filter(|f| *f != Floor::Decap) {
            floor_ns.push(timed_floor(floor));
        }
        if let Some(floor) = case.floor_reference {
            floor_reference_ns.push(timed_floor(floor));
        }
        let before = fixture::snapshot(&datapath);
        let empty = time_xdp(baseline, &frame, repeat, case.verdict);
        baseline_ns.push(empty);
        if case.tunnelled {
            let alone = datapath
                .xdp_program(PROG_BENCH_HARNESS)
                .expect("the harness bench program");
            let alone = time_xdp(alone, &frame, repeat, Verdict::Pass);
            if case.floor == Some(Floor::Decap) {
                let before = decap_floor_count(&datapath, &case.dst);
                let floor = datapath
                    .xdp_program(PROG_BENCH_FLOOR_DECAP)
                    .expect("the decap floor bench program");
                let with_floor = time_xdp(floor, &frame, repeat, Verdict::Pass);
                floor_ns.push(with_floor - alone + empty);
                let counted = decap_floor_count(&datapath, &case.dst) - before;
                assert_eq!(
                    counted,
                    u64::from(repeat),
                    "the decap floor counted every timed packet to {}",
                    case.dst
                );
            }
            let with_vip = datapath
                .xdp_program(PROG_BENCH_DECAP)
                .expect("the decap bench program");
            let with_vip = time_xdp(with_vip, &frame, repeat, case.verdict);
            harness.alone_ns.push(alone);
            harness.with_vip_ns.push(with_vip);
            harness.adjust_head_ns.push(time_xdp(
                program("baseline_adjust_head"),
                &frame,
                repeat,
                Verdict::Pass,
            ));
            vip_ns.push(with_vip - alone + empty);
        } else {
            let program = datapath.xdp();
            vip_ns.push(time_xdp(program, &frame, repeat, case.verdict));
        }
        let after = fixture::snapshot(&datapath);
        if counts == Counts::Checked {
            check_counted(
                &case.dst,
                case.counted_as,
                case.verdict,
                case.tunnelled,
                &before,
                &after,
                repeat,
            );
        }
    }
    Measurement {
        harness: case.tunnelled.then_some(harness),
        reference_ns: case.reference.is_some().then_some(reference_ns),
        floor_ns: case.floor.is_some().then_some(floor_ns),
        floor_reference_ns: case.floor_reference.is_some().then_some(floor_reference_ns),
        case,
        vip_ns,
        baseline_ns,
    }
}

/// Sets the TCP (`udp` false) or UDP ports of `floor_v4_port`'s list to
/// `port` alone.
pub fn allow_on_floor(baselines: &mut Ebpf, udp: bool, port: u16) {
    let mut ports: Array<_, PortBitmap> = baselines
        .map_mut(MAP_FLOOR_V4_PORTS)
        .expect("the port floor's list")
        .try_into()
        .expect("an array");
    let mut bitmap = PortBitmap {
        words: [0; PORT_BITMAP_WORDS],
    };
    bitmap.allow(port);
    ports
        .set(port_bitmap_index(0, udp), bitmap, 0)
        .expect("writing the port floor's list");
}

/// Packets `floor` (one of vip-baseline's) has counted to `dst`, over every
/// CPU, on the side of its verdict.
fn floor_count(baselines: &Ebpf, floor: Floor, dst: &IpAddr) -> u64 {
    match (floor, dst) {
        (Floor::V4Hit | Floor::V4DeniedPort | Floor::V4AllowedPort, IpAddr::V4(v4)) => {
            let slots: Array<_, Verdicts> = baselines
                .map(MAP_FLOOR_V4_SLOTS)
                .expect("the IPv4 floor's map")
                .try_into()
                .expect("an array");
            let cpus = slots.len() / FLOOR_V4_VIPS;
            (0..cpus)
                .map(|cpu| {
                    let slot = slots
                        .get(&(cpu * FLOOR_V4_VIPS + u32::from(v4.octets()[3])), 0)
                        .expect("a floor slot");
                    if floor == Floor::V4DeniedPort {
                        slot.dropped.packets
                    } else {
                        slot.accepted.packets
                    }
                })
                .sum()
        }
        (Floor::V6Hit, IpAddr::V6(_)) => {
            let slots: Array<_, SparseSlot> = baselines
                .map(MAP_FLOOR_V6_SLOTS)
                .expect("the IPv6 floor's map")
                .try_into()
                .expect("an array");
            let vip = VipAddr::from_ip(*dst);
            let index =
                sparse_hash_multiply(&vip, &FLOOR_V6_MULTIPLIERS) & (FLOOR_V6_SLOTS_PER_CPU - 1);
            let cpus = slots.len() / FLOOR_V6_SLOTS_PER_CPU;
            (0..cpus)
                .map(|cpu| {
                    let slot = slots
                        .get(&(cpu * FLOOR_V6_SLOTS_PER_CPU + index), 0)
                        .expect("a floor slot");
                    if slot.vip == vip {
                        slot.verdicts.accepted.packets
                    } else {
                        0
                    }
                })
                .sum()
        }
        _ => panic!("no floor {} for {dst}", floor.program()),
    }
}

/// Packets the decap floor has counted to the inner `dst`, over every CPU.
fn decap_floor_count(datapath: &Loaded, dst: &IpAddr) -> u64 {
    let IpAddr::V4(v4) = dst else {
        panic!("the decap floor counts IPv4 only")
    };
    let counters: PerCpuArray<_, Verdicts> = PerCpuArray::try_from(
        datapath
            .object_map(MAP_BENCH_FLOOR_DECAP)
            .expect("the decap floor's map in the bench object"),
    )
    .expect("a per-CPU array");
    let values = counters
        .get(&u32::from(v4.octets()[3]), 0)
        .expect("the decap floor's counters");
    values.iter().map(|v| v.accepted.packets).sum()
}

/// Whether [`measure`] checks vip's counters after each timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counts {
    /// vip_xdp must have counted every timed packet, on the right side.
    Checked,
    /// Not checked: for timing a throwaway build of the datapath that counts
    /// differently, or not at all. The floors' counts are still checked.
    Unchecked,
}

/// vip counted all `repeat` packets of one timing to `dst`, on the side of
/// `verdict`, and, for a tunnel, as decapsulated.
fn check_counted(
    dst: &IpAddr,
    counted_as: CountedAs,
    verdict: Verdict,
    tunnelled: bool,
    before: &Report,
    after: &Report,
    repeat: u32,
) {
    let deltas = fixture::deltas(before, after);
    let moved = deltas.vips.get(dst).copied().unwrap_or_default();
    let sent = u64::from(repeat);
    if tunnelled {
        assert_eq!(
            deltas.global.decapsulated.ipip, sent,
            "every run decapsulated"
        );
    }
    if counted_as == CountedAs::NonVip {
        assert!(
            deltas.vips.is_empty() && deltas.ranges.is_empty(),
            "no VIP or range row moved for {dst}, in no range: {:?} {:?}",
            deltas.vips,
            deltas.ranges
        );
        assert_eq!(
            deltas.global.non_vip_packets, sent,
            "every timed packet to {dst} counted as to no VIP"
        );
        return;
    }
    if let CountedAs::Unlearned(range) = counted_as {
        assert!(
            deltas.vips.is_empty(),
            "no VIP row moved for {dst}, which {range} does not learn: {:?}",
            deltas.vips
        );
        let moved = deltas.ranges.get(range).copied().unwrap_or_default();
        assert_eq!(
            (moved.packets, moved.bytes, moved.unlearned_packets),
            (sent, sent * 64, sent),
            "{range} counted every timed packet to {dst} as unlearned"
        );
        return;
    }
    let counted = match verdict {
        Verdict::Pass => (moved.packets, moved.bytes),
        Verdict::Drop => (moved.dropped_packets, moved.dropped_bytes),
    };
    assert_eq!(
        counted,
        (sent, sent * 64),
        "vip_xdp counted every timed packet to {dst}"
    );
}

/// Replaces the section between `<!-- bench:NAME:start -->` and its end marker in
/// `path` with `body` (appending the section if it is not there yet).
pub fn update_section(path: &std::path::Path, name: &str, body: &str) {
    let (start_mark, end_mark) = (
        format!("<!-- bench:{name}:start -->"),
        format!("<!-- bench:{name}:end -->"),
    );
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{start_mark}\n{body}{end_mark}");
    let new = match (text.find(&start_mark), text.find(&end_mark)) {
        (Some(start), Some(end)) if start < end => {
            format!(
                "{}{section}{}",
                &text[..start],
                &text[end + end_mark.len()..]
            )
        }
        _ => format!("{text}\n{section}\n"),
    };
    std::fs::write(path, new).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Replaces this machine's section `NAME` of `path` (see [`update_section`]):
/// one section per CPU model, so that a run on another kind of CPU adds its
/// own table beside this one's rather than replacing it. The body opens with
/// the date, the command that made it (`command`, then this process's
/// arguments) and the machine.
pub fn update_machine_section(path: &std::path::Path, name: &str, command: &str, body: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();
    let section = format!("{name}:{}", cpu_slug());
    let header = format!(
        "Measured {date} with `{command} {}`.\n{}",
        args.join(" "),
        machine()
    );
    update_section(path, &section, &format!("{header}\n{body}"));
}

/// The CPU model with its family and model numbers, in lower case, words
/// joined by dashes: the key of its sections in BENCHMARKS.md.
fn cpu_slug() -> String {
    slug(&format!("{}{}", cpu_model(), cpu_numbers()))
}

fn slug(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}

fn cpu_model() -> String {
    cpuinfo_field("model name").unwrap_or_else(|| "unknown CPU".into())
}

/// The first CPU's `field` in /proc/cpuinfo.
fn cpuinfo_field(field: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == field).then(|| value.trim().to_string())
    })
}

/// Family and model numbers: a hypervisor may give two kinds of CPU one
/// model name ("Intel(R) Xeon(R) Processor").
fn cpu_numbers() -> String {
    match (cpuinfo_field("cpu family"), cpuinfo_field("model")) {
        (Some(family), Some(model)) => format!(" (family {family}, model {model})"),
        _ => String::new(),
    }
}

/// The machine a run was made on, for BENCHMARKS.md.
pub fn machine() -> String {
    let cpu = cpu_model();
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    // Online CPUs, not this thread's affinity: some benches pin themselves
    // before they print the machine line.
    let cpus = aya::util::online_cpus().map_or(0, |cpus| cpus.len());
    format!(
        "Machine: {cpu}{}, {cpus} CPUs, kernel {kernel}; mitigations: {}.\n",
        cpu_numbers(),
        mitigations()
    )
}

/// The kernel's verdicts on the CPU weaknesses that tax returns and indirect
/// branches, which BPF programs and their helper calls are made of.
fn mitigations() -> String {
    ["spec_rstack_overflow", "retbleed", "spectre_v2"]
        .iter()
        .filter_map(|name| {
            let path = format!("/sys/devices/system/cpu/vulnerabilities/{name}");
            let verdict = std::fs::read_to_string(path).ok()?;
            Some(format!("{name} \"{}\"", verdict.trim()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::{config, declaring_many_config, many_declared, median, slug};

    /// The sparse IPv6 rows' VIP, 2001:db8::7, probes the IPv6 index by its
    /// block first: at 100 and 10,000 ranges its first entry is free, so the
    /// ranges' entries by their /64 (50 and 9,487 of them) cost those rows
    /// nothing but that read.
    #[test]
    fn the_ipv6_rows_block_probe_crosses_no_range_entry() {
        for ranges in [100, 10_000] {
            let config =
                vip_userspace::Config::parse(&config(ranges), std::path::Path::new("bench"))
                    .unwrap();
            let layout = vip_userspace::Layout::new(&config);
            let len = layout.capacity.v6_blocks;
            let taken: std::collections::BTreeSet<u32> =
                layout.v6_blocks().iter().map(|&(entry, _)| entry).collect();
            assert_eq!(taken.len(), layout.v6_index.ranges.len());
            let block: std::net::Ipv6Addr = "2001:db8::".parse().unwrap();
            let start = vip_common::v6_block_hash(bytemuck::cast(block.octets()));
            assert!(!taken.contains(&(start & (len - 1))), "{ranges} ranges");
        }
    }

    /// The many-declared bench row's index sits exactly at the bound that
    /// lets declared VIPs and ranges by their /64 in: one more declared VIP
    /// would double it. At 10,000 ranges, 53 of the 9,487 ranges find no
    /// free entry within their 8 probes at that load (they ask the trie).
    #[test]
    fn the_many_declared_row_fills_the_ipv6_index_to_its_bound() {
        for (ranges, more, len, by_64) in [(100, 4_029, 16_384, 50), (10_000, 6_880, 65_536, 9_434)]
        {
            assert_eq!(many_declared(ranges), more);
            let layout = |more: usize| {
                let config = vip_userspace::Config::parse(
                    &declaring_many_config(ranges, more),
                    std::path::Path::new("bench"),
                )
                .unwrap();
                vip_userspace::Layout::new(&config)
            };
            let full = layout(more);
            assert_eq!(full.capacity.v6_blocks, len, "{ranges} ranges");
            assert_eq!(full.v6_index.declared.len(), more + 1, "{ranges} ranges");
            assert_eq!(full.v6_index.ranges.len(), by_64, "{ranges} ranges");
            assert_eq!(
                layout(more + 1).capacity.v6_blocks,
                2 * len,
                "{ranges} ranges"
            );
        }
    }

    #[test]
    fn a_slug_keeps_the_family_and_model_numbers() {
        assert_eq!(
            slug("Intel(R) Xeon(R) Processor (family 6, model 167)"),
            "intel-r-xeon-r-processor-family-6-model-167"
        );
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[0.84, 0.90]), 0.87);
    }
}
