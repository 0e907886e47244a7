//! `cargo xtask bench --e2e`: end-to-end packet rates through a veth pair, vip
//! beside a bare XDP program, nftables, iptables and the loopback trick, in one
//! run. See BENCHMARKS.md for how to read the figures.

use std::{fmt::Write, net::IpAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;

use vip_tests::{
    bench::{machine, median, update_section},
    e2e::{run_case, upgrade_under_load, E2eCase, E2eResult, Receiver, RECEIVER_IF},
    packets::FrameSpec,
};

/// End-to-end packet rates through a veth pair: vip beside a bare XDP program,
/// nftables, iptables and the loopback trick.
#[derive(clap::Parser)]
#[command(name = "vip-e2e")]
struct Args {
    /// Runs per case.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds each run sends for.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Exit non-zero when a target is missed.
    #[arg(long)]
    check: bool,
    /// Rewrite the end-to-end section of that file with this run.
    #[arg(long, value_name = "BENCHMARKS.md")]
    update: Option<PathBuf>,
    /// Run only the cases whose label contains TEXT (for profiling one case).
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Instead of the cases: an in-place upgrade of vip with 10,000 ranges,
    /// under load to 65,536 VIPs; how long it takes and whether a frame went
    /// uncounted (with --update, into the upgrade section).
    #[arg(long)]
    upgrade: bool,
}

fn vip_config(ranges: &[(String, String)], allow: &str) -> String {
    let mut text = format!("interfaces = [\"{RECEIVER_IF}\"]\nxdp_mode = \"native\"\n");
    for (name, cidr) in ranges {
        let _ = write!(
            text,
            "[[range]]\nname = \"{name}\"\ncidr = \"{cidr}\"\nallow = [{allow}]\n"
        );
    }
    text
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cases() -> Vec<E2eCase> {
    let v4 = ip("192.0.2.7");
    let v6 = ip("2001:db8::7");
    let web = vec![("web".to_string(), "192.0.2.0/24".to_string())];
    let web6 = vec![("web6".to_string(), "2001:db8::/64".to_string())];
    let (many_config, many_template, spread) = many();
    let denied = |dst| FrameSpec::udp(dst, 9);
    let allowed = |dst| FrameSpec::udp(dst, 53);
    let case = |label: &str, receiver, template, targets| E2eCase {
        label: label.to_string(),
        receiver,
        template,
        targets,
    };
    vec![
        case("bare XDP_DROP", Receiver::Bare { drop: true }, denied(v4), vec![v4]),
        case("vip drops (denied port), IPv4, 1 VIP", Receiver::Vip { config: vip_config(&web, "\"tcp/80\"") }, denied(v4), vec![v4]),
        case(
            "nftables netdev ingress drop",
            Receiver::Nft { ruleset: "table netdev t {\n chain c {\n  type filter hook ingress device vips0 priority 0;\n  ip daddr 192.0.2.0/24 drop\n }\n}\n" },
            denied(v4),
            vec![v4],
        ),
        case(
            "nftables inet prerouting raw drop",
            Receiver::Nft { ruleset: "table inet t {\n chain c {\n  type filter hook prerouting priority raw;\n  ip daddr 192.0.2.0/24 drop\n }\n}\n" },
            denied(v4),
            vec![v4],
        ),
        case(
            "iptables raw PREROUTING drop",
            Receiver::Iptables { args: &["-t", "raw", "-A", "PREROUTING", "-d", "192.0.2.0/24", "-j", "DROP"] },
            denied(v4),
            vec![v4],
        ),
        case("loopback trick (local route, no filter)", Receiver::LoopbackTrick, denied(v4), vec![v4]),
        case("bare XDP_PASS", Receiver::Bare { drop: false }, allowed(v4), vec![v4]),
        case("vip counts and passes (allowed port), IPv4", Receiver::Vip { config: vip_config(&web, "\"udp/53\"") }, allowed(v4), vec![v4]),
        case("vip drops, IPv6, 1 VIP in 1 range", Receiver::Vip { config: vip_config(&web6, "\"tcp/80\"") }, denied(v6), vec![v6]),
        case(
            "vip drops, IPv6, 65,536 VIPs in 10,000 ranges",
            Receiver::Vip { config: many_config },
            many_template,
            spread,
        ),
    ]
}

/// (what, numerator case, denominator case, target ratio).
const COMPARISONS: [(&str, usize, usize, f64); 8] = [
    ("vip drop vs bare XDP_DROP", 1, 0, 0.90),
    ("vip drop vs nftables netdev ingress", 1, 2, 3.0),
    ("vip drop vs nftables inet prerouting raw", 1, 3, 3.0),
    ("vip drop vs iptables raw", 1, 4, 3.0),
    ("vip drop vs the loopback trick", 1, 5, 10.0),
    ("vip pass vs bare XDP_PASS", 7, 6, 0.95),
    (
        "65,536 VIPs in 10,000 ranges vs 1 VIP in 1 range (IPv6)",
        9,
        8,
        0.90,
    ),
    ("IPv6 drop vs IPv4 drop", 8, 1, 0.90),
];

fn main() -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("vip-e2e: needs root (run it through `cargo xtask bench --e2e`)");
        return ExitCode::FAILURE;
    }
    let args = Args::parse();
    let duration = Duration::from_secs_f64(args.seconds);
    if args.upgrade {
        return upgrade(&args);
    }
    if let Some(only) = &args.only {
        for case in cases()
            .into_iter()
            .filter(|c| c.label.contains(only.as_str()))
        {
            let result = run_case(case, args.runs, duration);
            println!("{}: {} Mpps", result.label, mpps(&result.rates));
        }
        return ExitCode::SUCCESS;
    }
    let mut results = Vec::new();
    for case in cases() {
        eprintln!(
            "e2e: {} ({} x {:.1} s)",
            case.label, args.runs, args.seconds
        );
        results.push(run_case(case, args.runs, duration));
    }
    let (table, misses, disagreements) = render(&results, &args);
    print!("{table}");
    if let Some(path) = &args.update {
        update_section(path, "e2e", &format!("{}\n{table}", machine()));
        println!("updated {}", path.display());
    }
    if disagreements > 0 {
        eprintln!("vip-e2e: vip's counters disagree with the interface's by more than 1% in {disagreements} case(s)");
        return ExitCode::FAILURE;
    }
    if args.check && misses > 0 {
        eprintln!("vip-e2e: {misses} targets missed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The IPv6 config of the 65,536-VIP case (10,000 ranges, 65,536 VIPs spread
/// over them), its frame to a denied port, and the targets.
fn many() -> (String, FrameSpec, Vec<IpAddr>) {
    let many: Vec<(String, String)> = (0..10_000)
        .map(|k| (format!("r{k}"), format!("2001:db8:0:{k:x}::/64")))
        .collect();
    let spread: Vec<IpAddr> = (0..65_536u32)
        .map(|i| {
            ip(&format!(
                "2001:db8:0:{:x}::{:x}",
                i % 10_000,
                i / 10_000 + 1
            ))
        })
        .collect();
    (
        vip_config(&many, "\"tcp/80\""),
        FrameSpec::udp(spread[0], 9),
        spread,
    )
}

/// One in-place upgrade under load per run; every frame the interface took in
/// must be counted by vip.
fn upgrade(args: &Args) -> ExitCode {
    let (config, template, targets) = many();
    // Long enough that the upgrade falls well inside the load.
    let duration = Duration::from_secs_f64(args.seconds.max(3.0) * 2.0);
    let mut out = format!(
        "In-place upgrade (same build: programs loaded onto the pinned maps, then each link \
         replaced) of vip with 10,000 IPv6 ranges, under 64-byte frames to 65,536 of their \
         VIPs for {:.0} s, generator pinned to CPU 0; {} run(s)\n\n\
         | run | upgrade took (ms) | sent | received | counted by vip | uncounted |\n\
         |---:|---:|---:|---:|---:|---:|\n",
        duration.as_secs_f64(),
        args.runs
    );
    let mut uncounted_runs = 0;
    for run in 1..=args.runs {
        let r = upgrade_under_load(&config, template.clone(), &targets, duration);
        let uncounted = r.received as i64 - r.counted as i64;
        if uncounted != 0 {
            uncounted_runs += 1;
        }
        let _ = writeln!(
            out,
            "| {run} | {} | {} | {} | {} | {uncounted} |",
            r.took.as_millis(),
            r.sent,
            r.received,
            r.counted
        );
    }
    print!("{out}");
    if let Some(path) = &args.update {
        update_section(path, "upgrade", &format!("{}\n{out}", machine()));
        println!("updated {}", path.display());
    }
    if uncounted_runs > 0 {
        eprintln!("vip-e2e: frames went uncounted during an upgrade in {uncounted_runs} run(s)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn mpps(rates: &[f64]) -> String {
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    format!(
        "{:.2} ({:.2}-{:.2})",
        median(rates) / 1e6,
        min / 1e6,
        max / 1e6
    )
}

fn render(results: &[E2eResult], args: &Args) -> (String, usize, usize) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "64-byte UDP frames through a veth pair, generator (XDP live frames) pinned to CPU 0; \
         receive rate from `ip -s link` on the receiver; median of {} runs of {:.1} s (min-max)\n",
        args.runs, args.seconds
    );
    let _ = writeln!(out, "| receiver | Mpps | vip's count vs the interface's |");
    let _ = writeln!(out, "|---|---:|---:|");
    let mut disagreements = 0;
    for r in results {
        let check = match r.vip_vs_interface {
            Some((vip, rx)) => {
                let off = (vip as f64 - rx as f64).abs() / (rx.max(1) as f64);
                if off > 0.01 {
                    disagreements += 1;
                }
                format!(
                    "{vip} vs {rx} ({:+.3}%)",
                    (vip as f64 - rx as f64) / rx.max(1) as f64 * 100.0
                )
            }
            None => "-".to_string(),
        };
        let _ = writeln!(out, "| {} | {} | {check} |", r.label, mpps(&r.rates));
    }
    let _ = writeln!(out, "\n| comparison | ratio | target |");
    let _ = writeln!(out, "|---|---:|---:|");
    let mut misses = 0;
    for (what, num, den, target) in COMPARISONS {
        let ratio = median(&results[num].rates) / median(&results[den].rates);
        let verdict = if ratio >= target {
            "met"
        } else {
            misses += 1;
            "MISSED"
        };
        let _ = writeln!(out, "| {what} | {ratio:.2} | ≥ {target:.2} {verdict} |");
    }
    (out, misses, disagreements)
}
