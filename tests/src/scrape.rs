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
    fixture::{self, Program, Verdict},
    packets::FrameSpec,
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

pub struct ScrapeTimes {
    pub read: Vec<Duration>,
    pub encode: Vec<Duration>,
    pub series: usize,
}

/// Counts one packet to each VIP through BPF_PROG_TEST_RUN, then reads and
/// encodes the counters `runs` times. Panics unless every VIP reads exactly 1.
pub fn measure(runs: usize) -> ScrapeTimes {
    // The per-VIP table is per CPU: fill it from one.
    fixture::pin_to_cpu0();
    let text = config();
    let config = Config::parse(&text, Path::new("scrape bench")).unwrap();
    let mut datapath = fixture::load(&text);
    for i in 0..VIPS {
        let frame = FrameSpec::udp(vip(i), 53).build();
        assert_eq!(
            fixture::run_once(&mut datapath, Program::Xdp, &frame),
            Verdict::Pass
        );
    }
    let policy = SeriesPolicy::from_config(&config);
    let mut times = ScrapeTimes {
        read: Vec::new(),
        encode: Vec::new(),
        series: 0,
    };
    for _ in 0..runs {
        let start = Instant::now();
        let report = stats::read(datapath.maps()).expect("reading counters");
        times.read.push(start.elapsed());
        // A VIP that found no free slot among its 8 probes counts in its range
        // only (a fraction of a percent at the default capacity).
        let in_ranges: u64 = report.ranges.iter().map(|r| r.packets).sum();
        assert_eq!(in_ranges, u64::from(VIPS), "every packet counted once");
        let overflow: u64 = report
            .ranges
            .iter()
            .map(|r| r.sparse_overflow_packets)
            .sum();
        let vips = report.ranges.iter().flat_map(|r| &r.vips);
        assert!(vips.clone().all(|v| v.packets == 1));
        assert_eq!(vips.count() as u64 + overflow, u64::from(VIPS));
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
    times
}

/// The BENCHMARKS.md table.
pub fn render(times: &ScrapeTimes) -> String {
    let ms = |v: &[Duration]| {
        let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ms.iter().copied().fold(0.0, f64::max);
        (
            median(&ms),
            format!("{:.1} ({min:.1}-{max:.1})", median(&ms)),
        )
    };
    let (read, read_text) = ms(&times.read);
    let (_, encode_text) = ms(&times.encode);
    let verdict = if read < TARGET.as_secs_f64() * 1e3 {
        "met"
    } else {
        "MISSED"
    };
    format!(
        "One scrape of {VIPS} VIPs in {RANGES} IPv6 ranges, all with per-VIP series \
         ({} `vip_packets_total` series), median of {} runs (min-max)\n\n\
         | step | ms | target |\n|---|---:|---:|\n\
         | read every counter (all CPUs) | {read_text} | < {} {verdict} |\n\
         | encode (OpenMetrics text) | {encode_text} | none |\n",
        times.series,
        times.read.len(),
        TARGET.as_millis()
    )
}

pub fn median_read(times: &ScrapeTimes) -> Duration {
    let mut read = times.read.clone();
    read.sort();
    read[read.len() / 2]
}
