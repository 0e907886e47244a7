//! The scrape bench: how long one `/metrics` scrape takes to read and encode the
//! counters of 65,536 VIPs (the exporter issue's target: reading under 100 ms).

use std::{
    fmt::Write,
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use vip_userspace::{
    metrics::{encode, Format, SeriesPolicy, Snapshot},
    stats, Config,
};

use crate::{
    bench::median,
    cpu_rows::{
        assert_ranges_over, assert_rows_over, counted_since, ranges_counted_since, RangeRows, Rows,
    },
    fixture::{self, Program, Verdict},
    packets::FrameSpec,
    scrape_hashes::{self, HashReads},
};

pub const VIPS: u32 = 65_536;
pub const RANGES: u32 = 10_000;
pub const TARGET: Duration = Duration::from_millis(100);

/// 10,000 IPv6 ranges that export per-VIP series, 65,536 VIPs spread over them
/// (as in the end-to-end lab).
fn config() -> String {
    let mut text = String::from("interfaces = [\"lo\"]\n");
    for k in 0..RANGES {
        let _ = write!(
            text,
            "[[range]]\nname = \"r{k}\"\ncidr = \"2001:db8:0:{k:x}::/64\"\nper_vip_metrics = true\n"
        );
    }
    text
}

fn vip(i: u32) -> IpAddr {
    format!("2001:db8:0:{:x}::{:x}", i % RANGES, i / RANGES + 1)
        .parse()
        .unwrap()
}

/// Hosts with more CPUs than this one, emulated: each CPU's stretch of the
/// counter tables copied from one this host filled (`Maps::emulate_cpus`).
pub const EMULATED_CPUS: [u32; 3] = [16, 64, 128];

pub struct ScrapeTimes {
    /// This host's possible CPUs, and how many of them counted every VIP.
    pub cpus: u32,
    pub filled: u32,
    pub read: Vec<Duration>,
    /// For each of `EMULATED_CPUS`, the reads of that many CPUs' tables.
    pub emulated: Vec<(u32, Vec<Duration>)>,
    pub encode: Vec<Duration>,
    pub series: usize,
    /// Reads of the declared and the steered VIPs, in a datapath of their own.
    pub hashes: HashReads,
}

/// Counts one packet to each VIP through BPF_PROG_TEST_RUN on each of up to
/// two CPUs (the second in another order, as CPUs see traffic in different
/// orders and so place some VIPs differently), then reads and encodes the
/// counters `runs` times. Then reads them as hosts of `EMULATED_CPUS` CPUs
/// hold them: CPU 0 as the first CPU filled, every other CPU as the last.
/// Panics unless every read gives each VIP exactly its packets.
pub fn measure(runs: usize) -> ScrapeTimes {
    let text = config();
    let config = Config::parse(&text, Path::new("scrape bench")).unwrap();
    let mut datapath = fixture::load(&text);
    let allowed = fixture::allowed_cpus();
    let used: Vec<u32> = allowed.iter().take(2).map(|&cpu| cpu as u32).collect();
    // What each filled CPU counted (a VIP that found no slot there is left
    // out: it counted in its range only).
    let mut held: Vec<Rows> = Vec::new();
    let mut held_by_range: Vec<RangeRows> = Vec::new();
    for (position, &cpu) in used.iter().enumerate() {
        fixture::pin_to_cpu(cpu as usize);
        for i in 0..VIPS {
            let i = if position == 0 {
                i
            } else {
                i.wrapping_mul(SCATTER) % VIPS
            };
            let frame = FrameSpec::udp(vip(i), 53).build();
            assert_eq!(
                fixture::run_once(&mut datapath, Program::Xdp, &frame),
                Verdict::Pass
            );
        }
        let report = stats::read(datapath.maps()).expect("reading counters");
        // A VIP that found no free slot among its probes counts in its range
        // only (a fraction of a percent at the default capacity).
        let in_ranges: u64 = report.ranges.iter().map(|r| r.packets).sum();
        assert_eq!(
            in_ranges,
            u64::from(VIPS) * (position as u64 + 1),
            "every packet counted once"
        );
        let on_this_cpu = counted_since(&report, &held);
        assert!(on_this_cpu.values().all(|&(packets, _)| packets == 1));
        held.push(on_this_cpu);
        let by_range = ranges_counted_since(&report, &held_by_range);
        assert_eq!(
            by_range.iter().map(|(learned, _)| learned).sum::<u64>(),
            held.last().unwrap().len() as u64,
            "a slot learned for each VIP this CPU holds"
        );
        held_by_range.push(by_range);
    }
    // Reads run where the scheduler puts them, as a daemon's do.
    fixture::allow_cpus(&allowed);
    let policy = SeriesPolicy::from_config(&config);
    let cpus = aya::util::nr_cpus().expect("CPU count") as u32;
    let mut times = ScrapeTimes {
        cpus,
        filled: used.len() as u32,
        read: Vec::new(),
        emulated: Vec::new(),
        encode: Vec::new(),
        series: 0,
        hashes: HashReads {
            declared: Vec::new(),
            steered: Vec::new(),
        },
    };
    let filled: Vec<usize> = (0..used.len()).collect();
    for _ in 0..runs {
        let start = Instant::now();
        let report = stats::read(datapath.maps()).expect("reading counters");
        times.read.push(start.elapsed());
        assert_rows_over(&report, &filled, &held);
        assert_ranges_over(&report, &filled, &held_by_range);
        let start = Instant::now();
        let text = encode(
            Snapshot {
                report,
                policy: policy.clone(),
            },
            Format::OpenMetrics,
        );
        times.encode.push(start.elapsed());
        times.series = text
            .lines()
            .filter(|l| l.starts_with("vip_packets_total{"))
            .count();
    }
    let position = |cpu: u32| if cpu == 0 { 0 } else { used.len() - 1 };
    for emulated in EMULATED_CPUS {
        datapath
            .maps_mut()
            .emulate_cpus(emulated, &|cpu| used[position(cpu)])
            .expect("emulating more CPUs");
        let positions: Vec<usize> = (0..emulated).map(position).collect();
        let mut reads = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let report = stats::read(datapath.maps()).expect("reading counters");
            reads.push(start.elapsed());
            assert_rows_over(&report, &positions, &held);
            assert_ranges_over(&report, &positions, &held_by_range);
        }
        times.emulated.push((emulated, reads));
    }
    drop(datapath);
    times.hashes = scrape_hashes::measure(runs);
    times
}

/// An odd multiplier near n / φ for n = 65,536: the second CPU's order.
const SCATTER: u32 = 40_503;

/// The BENCHMARKS.md table.
pub fn render(times: &ScrapeTimes) -> String {
    let ms = |v: &[Duration]| {
        let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ms.iter().copied().fold(0.0, f64::max);
        format!("{:.1} ({min:.1}-{max:.1})", median(&ms))
    };
    let target = |v: &[Duration], threads: Option<(usize, usize)>| {
        let verdict = match threads {
            _ if median_of(v) < TARGET => "met".to_string(),
            Some((here, there)) if here < there => {
                format!("not judged: {here} of the {there} reader threads")
            }
            _ => "MISSED".to_string(),
        };
        format!("< {} {verdict}", TARGET.as_millis())
    };
    let mut out = format!(
        "One scrape of {VIPS} VIPs in {RANGES} IPv6 ranges, all with per-VIP series \
         ({} `vip_packets_total` series), median of {} runs (min-max). Every VIP counted \
         on {} of this host's {} CPUs, the second CPU in another order. Hosts with more \
         CPUs are emulated: the per-VIP and per-range counter tables are copied into this \
         process's memory, one stretch per CPU (CPU 0's from the first CPU filled, every \
         other's from the last CPU filled), and read as a host with that many CPUs reads its \
         own, every read checked VIP by VIP and range by range. A read takes one thread per 8 \
         CPUs, at most 8 and no more than the CPUs it may run on, so this host may give an \
         emulated host's read fewer threads than that host \
         would: such a read is met if it meets the target all the same, and not judged if it \
         does not. The last two rows read a datapath of their own: {} VIPs declared in \
         ranges that learn nothing, each counted once, and {} steered VIPs whose per-CPU \
         counts are written from userspace (BPF_PROG_TEST_RUN cannot hand the socket lookup \
         program sockets), read as a scrape with four steer targets reads them, every VIP \
         checked.\n\n\
         | step | ms | target |\n|---|---:|---:|\n\
         | read every counter, this host's {} CPUs | {} | {} |\n",
        times.series,
        times.read.len(),
        times.filled,
        times.cpus,
        scrape_hashes::DECLARED,
        scrape_hashes::STEERED,
        times.cpus,
        ms(&times.read),
        target(&times.read, None),
    );
    for (cpus, reads) in &times.emulated {
        let threads = judged_threads(*cpus);
        let _ = writeln!(
            out,
            "| read every counter, {cpus} CPUs (emulated; {} reader threads, {} on such a host) | {} | {} |",
            threads.0,
            threads.1,
            ms(reads),
            target(reads, Some(threads))
        );
    }
    let _ = writeln!(
        out,
        "| encode (OpenMetrics text) | {} | none |",
        ms(&times.encode)
    );
    out.push_str(&scrape_hashes::rows(&times.hashes, times.cpus, ms));
    out
}

fn median_of(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// The reader threads of a read of `cpus` CPUs' tables here, and on a host
/// with that many CPUs.
fn judged_threads(cpus: u32) -> (usize, usize) {
    let here = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (
        stats::reader_threads(cpus, here),
        stats::reader_threads(cpus, cpus as usize),
    )
}

/// Whether a read missed its target: this host's, or an emulated host's
/// read by as many threads as such a host would use. A read by fewer
/// threads that still meets the target is met; one that misses is not
/// judged.
pub fn missed(times: &ScrapeTimes) -> bool {
    median_of(&times.read) >= TARGET
        || times.emulated.iter().any(|(cpus, reads)| {
            let (here, there) = judged_threads(*cpus);
            here >= there && median_of(reads) >= TARGET
        })
}
