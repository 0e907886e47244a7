//! The end-to-end lab: a sender and a receiver namespace on one veth pair, a
//! traffic generator pinned to CPU 0 (XDP live frames, or a packet socket where
//! the kernel refuses them), and receive rates read from the receiver's own
//! interface counters (`ip -s link`), independent of vip.

use std::{
    net::IpAddr,
    sync::OnceLock,
    time::{Duration, Instant},
};

use aya::{
    maps::Array,
    programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
    sys::SyscallError,
    Ebpf, EbpfLoader,
};

use vip_userspace::datapath::batch;

use crate::{
    bench::baseline_object,
    netns::{Lab, Netns},
    packet_socket::{frames_to, PacketSocket},
    packets::FrameSpec,
};

pub const SENDER_IF: &str = Lab::CLIENT_IF;
pub const RECEIVER_IF: &str = Lab::SERVER_IF;
const MAX_TARGETS: u32 = 65_536;
/// Frames per BPF_PROG_TEST_RUN call: about 0.3 s at the rates seen here, so the
/// page-pool teardown at the end of each call stays small.
const REPEAT: u32 = 2_000_000;
const BATCH: u32 = 64;

/// The sender is the lab's client, the receiver its server (with an address, for
/// the cases that hand frames to the stack).
fn lab() -> Lab {
    let lab = Lab::new("e2e");
    lab.server
        .ip(&["addr", "add", "198.18.0.2/24", "dev", RECEIVER_IF]);
    lab
}

/// Packets the receiver's interface counted, by the kernel.
pub fn received(lab: &Lab) -> u64 {
    let out = lab
        .server
        .ip_output(&["-s", "-j", "link", "show", "dev", RECEIVER_IF]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    json[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .expect("rx packets")
}

/// An empty program attached to the receiver (kept attached while alive).
pub struct Attached {
    _ebpf: Ebpf,
}

/// Attaches `baseline_pass` or `baseline_drop` natively to the receiver interface.
pub fn attach_baseline(lab: &Lab, name: &str) -> Attached {
    let mut ebpf = Ebpf::load_file(baseline_object()).expect("loading the bench programs");
    attach_native(lab, &mut ebpf, name);
    Attached { _ebpf: ebpf }
}

/// Loads program `name` of `ebpf` and attaches it natively to the receiver
/// interface, from inside the receiver's namespace; attached while `ebpf` lives.
fn attach_native(lab: &Lab, ebpf: &mut Ebpf, name: &str) {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lab.server.enter();
                let program: &mut Xdp = ebpf
                    .program_mut(name)
                    .expect("program")
                    .try_into()
                    .expect("XDP");
                program
                    .load()
                    .unwrap_or_else(|e| panic!("loading {name}: {e}"));
                program
                    .attach(RECEIVER_IF, XdpMode::Driver)
                    .expect("attaching natively");
            })
            .join()
            .expect("attach thread");
    });
}

/// How the generator sends its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// `bench_generator` under BPF_PROG_TEST_RUN with live frames: each frame
    /// goes out of the sender's interface as an XDP frame, never an skb.
    LiveFrames,
    /// Ready-made frames through an AF_PACKET socket ([`PacketSocket`]), for
    /// kernels that refuse live frames.
    PacketSocket,
}

impl Source {
    /// How the tables and the JSON name it.
    pub fn describe(self) -> &'static str {
        match self {
            Source::LiveFrames => "XDP live frames",
            Source::PacketSocket => "an AF_PACKET socket, past the qdisc",
        }
    }
}

/// The source every generator of this process uses: chosen by
/// [`choose_source`], or by the first run (live frames unless the kernel
/// refuses them).
static SOURCE: OnceLock<Source> = OnceLock::new();

/// Makes every generator of this process send through `source`; false if one
/// has already run with another.
pub fn choose_source(source: Source) -> bool {
    *SOURCE.get_or_init(|| source) == source
}

/// The source the generators of this process sent through, once one ran.
pub fn source() -> Option<Source> {
    SOURCE.get().copied()
}

/// The traffic generator, loaded for a set of destinations.
pub struct Generator {
    ebpf: Ebpf,
    frame: Vec<u8>,
    /// Where the destination address sits in the frame.
    offset: usize,
    targets: Vec<IpAddr>,
}

impl Generator {
    /// Frames like `template` (a 64-byte UDP frame), cycling through `targets`.
    pub fn new(template: FrameSpec, targets: &[IpAddr]) -> Generator {
        assert!(!targets.is_empty() && targets.len() <= MAX_TARGETS as usize);
        let frame = template.frame_len(64).build();
        let (offset, len) = if targets[0].is_ipv4() {
            (14 + 16, 4)
        } else {
            (14 + 24, 16)
        };
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("GEN_TARGETS", targets.len() as u32)
            .load_file(baseline_object())
            .expect("loading the bench programs");
        {
            let mut map: Array<_, [u8; 16]> =
                ebpf.map_mut("GEN_TARGETS").unwrap().try_into().unwrap();
            for (i, target) in targets.iter().enumerate() {
                let mut bytes = [0u8; 16];
                match target {
                    IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
                    IpAddr::V6(v6) => bytes = v6.octets(),
                }
                map.set(i as u32, bytes, 0).unwrap();
            }
            let mut config: Array<_, u32> = ebpf.map_mut("GEN_CONFIG").unwrap().try_into().unwrap();
            for (i, value) in [targets.len() as u32, offset as u32, len]
                .into_iter()
                .enumerate()
            {
                config.set(i as u32, value, 0).unwrap();
            }
        }
        let program: &mut Xdp = ebpf
            .program_mut("bench_generator")
            .unwrap()
            .try_into()
            .unwrap();
        program.load().expect("loading the generator");
        Generator {
            ebpf,
            frame,
            offset,
            targets: targets.to_vec(),
        }
    }

    /// Transmits out of the sender's interface for about `duration`, pinned to
    /// CPU 0; returns the frames sent and the time it took. The first run of
    /// the process tries live frames, unless a source was chosen; if the
    /// kernel refuses them (EPERM, before any frame is sent), that run and
    /// every later one send through a packet socket.
    pub fn run(&self, lab: &Lab, duration: Duration) -> (u64, Duration) {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    lab.client.enter();
                    crate::fixture::pin_to_cpu0();
                    if *SOURCE.get_or_init(|| self.live_frames_source()) == Source::LiveFrames {
                        self.send_live_frames(duration)
                    } else {
                        let frames = frames_to(&self.frame, self.offset, &self.targets);
                        PacketSocket::bind(SENDER_IF).send_for(&frames, duration)
                    }
                })
                .join()
                .expect("generator thread")
        })
    }

    /// Live frames unless one frame's run of them is refused. Called in the
    /// sender's namespace.
    fn live_frames_source(&self) -> Source {
        match self.test_run(1) {
            Ok(()) => Source::LiveFrames,
            Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                if io_error.raw_os_error() == Some(libc::EPERM) =>
            {
                eprintln!(
                    "e2e: this kernel refuses XDP live frames (EPERM); the generator sends \
                     through {} instead",
                    Source::PacketSocket.describe()
                );
                Source::PacketSocket
            }
            Err(e) => panic!("live-frames test run: {e}"),
        }
    }

    fn send_live_frames(&self, duration: Duration) -> (u64, Duration) {
        let (start, mut sent) = (Instant::now(), 0u64);
        while start.elapsed() < duration {
            self.test_run(REPEAT).expect("live-frames test run");
            sent += u64::from(REPEAT);
        }
        (sent, start.elapsed())
    }

    /// `repeat` live frames out of the sender's interface.
    fn test_run(&self, repeat: u32) -> Result<(), ProgramError> {
        let program: &Xdp = self
            .ebpf
            .program("bench_generator")
            .unwrap()
            .try_into()
            .unwrap();
        let ifindex = nix::net::if_::if_nametoindex(SENDER_IF).expect("sender interface");
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(self.frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let options = TestRunOptions {
            data_in: Some(&self.frame),
            ctx_in: Some(&ctx),
            repeat,
            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
            ..TestRunOptions::default()
        };
        program.test_run(options).map(|_| ())
    }
}

/// What stands on the receiver.
pub enum Receiver {
    /// An empty XDP program returning this verdict.
    Bare { drop: bool },
    /// vip-baseline's `baseline_read_drop`: XDP_DROP after reading the
    /// ethertype and the IPv4 destination (an IPv4 frame, or it passes).
    BareReading,
    /// `vip run` with this config.
    Vip { config: String },
    /// XDP_PASS, then this nftables ruleset (`nft -f`).
    Nft { ruleset: &'static str },
    /// XDP_PASS, then `iptables ARGS`.
    Iptables { args: &'static [&'static str] },
    /// XDP_PASS, then the loopback trick: the block local, nothing listening.
    LoopbackTrick,
    /// The floor of per-VIP accounting: vip-baseline's `floor_per_vip`, which
    /// counts per address of [`floor_vips`] and drops.
    Floor,
    /// The floor of an IPv4 VIP under an allow list: vip-baseline's
    /// `floor_v4_port` (a fixed /24, the destination port's bit in one list's
    /// bitmap, counted per VIP), its list allowing `port` of UDP (`udp`) or
    /// TCP. It drops and passes what vip's 1-VIP IPv4 cases do, in the least
    /// work that can.
    PortFloor { udp: bool, port: u16 },
    /// The floor in the shape of vip's table (vip-baseline's
    /// `floor_per_vip_hashed`): a hashed, probed table of 32-byte slots; with
    /// `line`, `floor_per_vip_hashed_line`, each slot alone in a 64-byte line
    /// as in vip's.
    HashedFloor { line: bool },
    /// XDP_PASS, then an ipset `hash:ip` with counters holding [`floor_vips`],
    /// matched from ip6tables raw PREROUTING (DROP): per-VIP counting without vip.
    Ipset,
    /// XDP_PASS, then an nftables set of [`floor_vips`] with a counter per
    /// element, matched in netdev ingress (drop).
    NftSet,
}

/// The synthetic set of the per-VIP comparisons: the 65,536 addresses of
/// 2001:db8:0:1::/112 (`vip_common::FLOOR_PREFIX_V6`), in index order.
pub fn floor_vips() -> Vec<IpAddr> {
    (0..vip_common::FLOOR_VIPS)
        .map(|i| {
            let mut octets = [0u8; 16];
            octets[..14].copy_from_slice(&vip_common::FLOOR_PREFIX_V6);
            octets[14..].copy_from_slice(&(i as u16).to_be_bytes());
            IpAddr::from(octets)
        })
        .collect()
}

/// `vips` in an order where neighbours are far apart (an odd multiplier mod a
/// power of two is a permutation), so that the uniform cases of the per-VIP
/// comparisons cycle through memory as real traffic would, not in the
/// address order a prefetcher follows.
pub fn scattered(vips: &[IpAddr]) -> Vec<IpAddr> {
    assert!(vips.len().is_power_of_two());
    (0..vips.len())
        .map(|i| vips[i.wrapping_mul(SCATTER) % vips.len()])
        .collect()
}

/// An odd multiplier near n / φ for n = 65,536.
const SCATTER: usize = 40_503;

/// `draws` destinations from `vips` under Zipf's law with s = 1 (rank k drawn
/// with weight 1/k), from a fixed seed; rank k is the k-th VIP of
/// [`scattered`], so the hottest VIPs are not neighbours.
pub fn zipf(vips: &[IpAddr], draws: usize) -> Vec<IpAddr> {
    let order = scattered(vips);
    let mut cumulative = Vec::with_capacity(order.len());
    let mut total = 0.0;
    for rank in 1..=order.len() {
        total += 1.0 / rank as f64;
        cumulative.push(total);
    }
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..draws)
        .map(|_| {
            // xorshift64*: good enough to sample a distribution.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let uniform =
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
            let rank = cumulative.partition_point(|&c| c < uniform * total);
            order[rank.min(order.len() - 1)]
        })
        .collect()
}

pub struct E2eCase {
    pub label: String,
    pub receiver: Receiver,
    pub template: FrameSpec,
    pub targets: Vec<IpAddr>,
}

pub struct E2eResult {
    pub label: String,
    /// Received packets per second, one per run (of [`run_interleaved`]: the
    /// k-th from its k-th round).
    pub rates: Vec<f64>,
    /// The receiver's own count of the runs' packets (vip's, the floor's, the
    /// ipset's or the nftables set's counters) beside the interface's.
    pub counted_vs_interface: Option<(u64, u64)>,
}

impl E2eResult {
    fn empty(label: &str) -> Self {
        E2eResult {
            label: label.to_string(),
            rates: Vec::new(),
            counted_vs_interface: None,
        }
    }
}

fn vip_total(stats: &serde_json::Value) -> u64 {
    stats["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["packets"].as_u64().unwrap() + r["dropped_packets"].as_u64().unwrap())
        .sum()
}

/// What counts on the receiver besides the interface, and how to read it.
enum Counter<'a> {
    Vip(crate::daemon::Daemon<'a>),
    Floor(Ebpf),
    PortFloor(Ebpf),
    HashedFloor(Ebpf),
    Ipset,
    NftSet,
}

impl Counter<'_> {
    /// Packets counted so far, over every VIP.
    fn total(&self, lab: &Lab) -> u64 {
        match self {
            Counter::Vip(daemon) => vip_total(&daemon.stats_json()),
            Counter::Floor(ebpf) => slot_packets(
                ebpf,
                vip_common::MAP_FLOOR_SLOTS,
                |s: &vip_common::Verdicts| s.dropped.packets,
            ),
            Counter::PortFloor(ebpf) => slot_packets(
                ebpf,
                vip_common::MAP_FLOOR_V4_SLOTS,
                |s: &vip_common::Verdicts| s.accepted.packets + s.dropped.packets,
            ),
            Counter::HashedFloor(ebpf) => {
                let map = vip_common::MAP_FLOOR_HASHED_OVERFLOW;
                let overflow = batch::per_cpu_array::<vip_common::Counter>(
                    ebpf.map(map).expect("the hashed floor's overflow map"),
                    map,
                )
                .expect("reading the overflow counter");
                let overflowed: u64 = overflow
                    .get(0)
                    .expect("the overflow counter")
                    .iter()
                    .map(|c| c.packets)
                    .sum();
                overflowed
                    + slot_packets(
                        ebpf,
                        vip_common::MAP_FLOOR_HASHED_SLOTS,
                        |s: &vip_common::FloorSlot| s.dropped.packets,
                    )
            }
            Counter::Ipset => {
                let out = run_in(&lab.server, "ipset", &["list", "vips"], None);
                out.lines()
                    .filter_map(|line| {
                        let mut words = line.split_whitespace().skip_while(|w| *w != "packets");
                        words.nth(1)?.parse::<u64>().ok()
                    })
                    .sum()
            }
            Counter::NftSet => {
                let out = run_in(
                    &lab.server,
                    "nft",
                    &["-j", "list", "set", "netdev", "t", "vips"],
                    None,
                );
                let json: serde_json::Value = serde_json::from_str(&out).expect("nft -j output");
                json["nftables"]
                    .as_array()
                    .expect("nftables array")
                    .iter()
                    .filter_map(|item| item["set"]["elem"].as_array())
                    .flatten()
                    .map(|elem| {
                        elem["elem"]["counter"]["packets"]
                            .as_u64()
                            .expect("element counter")
                    })
                    .sum()
            }
        }
    }
}

/// The packets a floor counted in the slots of its array `map`, read whole.
fn slot_packets<T: bytemuck::Pod>(
    ebpf: &Ebpf,
    map: &'static str,
    packets: impl Fn(&T) -> u64,
) -> u64 {
    let slots = batch::array::<T>(
        ebpf.map(map)
            .unwrap_or_else(|| panic!("the floor's map {map}")),
        map,
    )
    .expect("reading the floor's slots");
    (0..slots.len() as u32)
        .map(|key| packets(&slots.get(key).expect("a slot of the map")[0]))
        .sum()
}

/// Attaches `floor_per_vip` natively to the receiver interface.
fn attach_floor(lab: &Lab) -> Ebpf {
    let cpus = aya::util::nr_cpus().expect("CPU count") as u32;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(vip_common::MAP_FLOOR_SLOTS, vip_common::FLOOR_VIPS * cpus)
        .load_file(baseline_object())
        .expect("loading the bench programs");
    attach_native(lab, &mut ebpf, "floor_per_vip");
    ebpf
}

/// Attaches `floor_v4_port` natively to the receiver interface, its list
/// allowing `port` of UDP (`udp`) or TCP.
fn attach_port_floor(lab: &Lab, udp: bool, port: u16) -> Ebpf {
    let cpus = aya::util::nr_cpus().expect("CPU count") as u32;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(
            vip_common::MAP_FLOOR_V4_SLOTS,
            vip_common::FLOOR_V4_VIPS * cpus,
        )
        .load_file(baseline_object())
        .expect("loading the bench programs");
    crate::bench::allow_on_floor(&mut ebpf, udp, port);
    attach_native(lab, &mut ebpf, "floor_v4_port");
    ebpf
}

/// Attaches `floor_per_vip_hashed` (with `line`, `floor_per_vip_hashed_line`)
/// natively to the receiver interface.
fn attach_hashed_floor(lab: &Lab, line: bool) -> Ebpf {
    let cpus = aya::util::nr_cpus().expect("CPU count") as u32;
    let (program, spread) = if line {
        ("floor_per_vip_hashed_line", vip_common::FLOOR_LINE_SPREAD)
    } else {
        ("floor_per_vip_hashed", 1)
    };
    let slots = vip_common::FLOOR_HASHED_SLOTS_PER_CPU * cpus * spread;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(vip_common::MAP_FLOOR_HASHED_SLOTS, slots)
        .load_file(baseline_object())
        .expect("loading the bench programs");
    attach_native(lab, &mut ebpf, program);
    ebpf
}

fn ipset_restore(vips: &[IpAddr]) -> String {
    let mut text = format!(
        "create vips hash:ip family inet6 counters hashsize {n} maxelem {n}\n",
        n = vips.len()
    );
    for vip in vips {
        text.push_str(&format!("add vips {vip}\n"));
    }
    text
}

fn nft_set_ruleset(vips: &[IpAddr]) -> String {
    let elements: Vec<String> = vips.iter().map(ToString::to_string).collect();
    format!(
        "table netdev t {{\n set vips {{\n  type ipv6_addr\n  size {}\n  counter\n  elements = {{ {} }}\n }}\n \
         chain c {{\n  type filter hook ingress device {RECEIVER_IF} priority 0;\n  ip6 daddr @vips drop\n }}\n}}\n",
        vips.len(),
        elements.join(", ")
    )
}

/// Sets `receiver` up in `lab`: what counts on it, if anything, and what
/// must stay alive for it to stay attached.
fn set_up<'a>(
    receiver: &Receiver,
    lab: &'a Lab,
    instance: &'a crate::daemon::Instance,
) -> (Option<Counter<'a>>, Option<Attached>) {
    let mut counter = None;
    let mut attached = None;
    match receiver {
        Receiver::Bare { drop } => {
            attached = Some(attach_baseline(
                lab,
                if *drop {
                    "baseline_drop"
                } else {
                    "baseline_pass"
                },
            ))
        }
        Receiver::BareReading => attached = Some(attach_baseline(lab, "baseline_read_drop")),
        Receiver::Vip { config } => {
            counter = Some(Counter::Vip(crate::daemon::Daemon::start(
                &lab.server,
                config,
                instance,
            )));
        }
        Receiver::Nft { ruleset } => {
            attached = Some(attach_baseline(lab, "baseline_pass"));
            run_in(&lab.server, "nft", &["-f", "-"], Some(ruleset));
        }
        Receiver::Iptables { args } => {
            attached = Some(attach_baseline(lab, "baseline_pass"));
            run_in(&lab.server, "iptables", args, None);
        }
        Receiver::LoopbackTrick => {
            attached = Some(attach_baseline(lab, "baseline_pass"));
            lab.server
                .ip(&["route", "add", "local", "192.0.2.0/24", "dev", "lo"]);
        }
        Receiver::Floor => counter = Some(Counter::Floor(attach_floor(lab))),
        Receiver::PortFloor { udp, port } => {
            counter = Some(Counter::PortFloor(attach_port_floor(lab, *udp, *port)));
        }
        Receiver::HashedFloor { line } => {
            counter = Some(Counter::HashedFloor(attach_hashed_floor(lab, *line)));
        }
        Receiver::Ipset => {
            attached = Some(attach_baseline(lab, "baseline_pass"));
            // The lab turns IPv6 off; the stack drops IPv6 before PREROUTING then.
            lab.server
                .sysctl(&format!("net.ipv6.conf.{RECEIVER_IF}.disable_ipv6"), "0");
            run_in(
                &lab.server,
                "ipset",
                &["restore"],
                Some(&ipset_restore(&floor_vips())),
            );
            run_in(
                &lab.server,
                "ip6tables",
                &[
                    "-t",
                    "raw",
                    "-A",
                    "PREROUTING",
                    "-m",
                    "set",
                    "--match-set",
                    "vips",
                    "dst",
                    "-j",
                    "DROP",
                ],
                None,
            );
            counter = Some(Counter::Ipset);
        }
        Receiver::NftSet => {
            attached = Some(attach_baseline(lab, "baseline_pass"));
            run_in(
                &lab.server,
                "nft",
                &["-f", "-"],
                Some(&nft_set_ruleset(&floor_vips())),
            );
            counter = Some(Counter::NftSet);
        }
    }
    (counter, attached)
}

/// `runs` rounds of every case, one run of each per round, forward in even
/// rounds and backward in odd ones (A B B A). Each run is in a lab of its own
/// with the receiver set up afresh (a new daemon, new maps): where the kernel
/// puts a receiver's tables moves its rate by more than the runs of one set-up
/// differ, so the placement is sampled run by run, as vip-bench samples program
/// placement. The order matters because the machine's speed drifts over
/// minutes, so two cases compared run by run (the k-th run of each, from the
/// same round) see the same drift, where all runs of one case and then all of
/// the next would not. `progress` is told of each run before it starts.
pub fn run_interleaved(
    cases: &[E2eCase],
    runs: usize,
    duration: Duration,
    mut progress: impl FnMut(usize, &E2eCase),
) -> Vec<E2eResult> {
    let mut results: Vec<E2eResult> = cases.iter().map(|c| E2eResult::empty(&c.label)).collect();
    for round in 0..runs {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..cases.len()).collect()
        } else {
            (0..cases.len()).rev().collect()
        };
        for i in order {
            progress(round + 1, &cases[i]);
            run_once(&cases[i], duration, &mut results[i]);
        }
    }
    results
}

/// One run of `case` in a lab of its own: its rate is appended to `result`'s,
/// and the receiver's count and the interface's are added to its totals.
fn run_once(case: &E2eCase, duration: Duration, result: &mut E2eResult) {
    let lab = lab();
    let instance = crate::daemon::Instance::new("e2e");
    let (counter, attached) = set_up(&case.receiver, &lab, &instance);
    let generator = Generator::new(case.template.clone(), &case.targets);
    let counted_before = counter.as_ref().map(|c| c.total(&lab));
    let before = received(&lab);
    let (_, elapsed) = generator.run(&lab, duration);
    std::thread::sleep(Duration::from_millis(200)); // let NAPI drain
    let received = received(&lab) - before;
    result.rates.push(received as f64 / elapsed.as_secs_f64());
    if let (Some(c), Some(counted_before)) = (&counter, counted_before) {
        let totals = result.counted_vs_interface.get_or_insert((0, 0));
        totals.0 += c.total(&lab) - counted_before;
        totals.1 += received;
    }
    drop(attached);
    if let Some(Counter::Vip(daemon)) = counter {
        daemon.stop();
    }
}

/// Runs `program ARGS` in the namespace, with `stdin` fed if given, and
/// panics unless it succeeds; returns its standard output.
fn run_in(ns: &Netns, program: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::{io::Write, process::Stdio};
    let mut child = ns
        .command(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("feeding stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("waiting");
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// What an in-place upgrade under load did.
pub struct UpgradeResult {
    /// From starting the new `vip run` to its datapath counting again under
    /// its own programs (programs loaded, maps moved, links replaced).
    pub took: Duration,
    /// Frames the generator sent over the whole run, the receiver's interface
    /// counted, and vip counted (before, during and after the upgrade).
    pub sent: u64,
    pub received: u64,
    pub counted: u64,
}

/// `vip run --keep-datapath` with `config` under the generator's load to
/// `targets` for `duration`; a second start of the same binary upgrades its
/// datapath in place (loads its programs onto the pinned maps, replaces them
/// through the links) while the frames keep coming.
pub fn upgrade_under_load(
    config: &str,
    template: FrameSpec,
    targets: &[IpAddr],
    duration: Duration,
) -> UpgradeResult {
    let lab = lab();
    let instance = crate::daemon::Instance::new("e2e-up");
    let first =
        crate::daemon::Daemon::start_with(&lab.server, config, &instance, &["--keep-datapath"]);
    let generator = Generator::new(template, targets);
    let counted_before = vip_total(&first.stats_json());
    let before = received(&lab);
    let (sent, took, second) = std::thread::scope(|scope| {
        let load = scope.spawn(|| generator.run(&lab, duration));
        std::thread::sleep(duration / 3);
        first.stop();
        let started = Instant::now();
        let second =
            crate::daemon::Daemon::start_with(&lab.server, config, &instance, &["--keep-datapath"]);
        let took = started.elapsed();
        let (sent, _) = load.join().expect("generator");
        (sent, took, second)
    });
    std::thread::sleep(Duration::from_millis(200)); // let NAPI drain
    let received = received(&lab) - before;
    let counted = vip_total(&second.stats_json()) - counted_before;
    assert!(
        second.log().contains("its programs replaced in place"),
        "the second start replaced the programs in place:\n{}",
        second.log()
    );
    second.stop();
    instance.vip_ok(&lab.server, &["down"]);
    UpgradeResult {
        took,
        sent,
        received,
        counted,
    }
}
