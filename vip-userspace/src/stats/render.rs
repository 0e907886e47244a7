//! The human-readable `vip stats` table.

use std::fmt::Write;

use super::Report;

pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let d = &report.datapath;
    let programs: Vec<String> = d
        .programs
        .iter()
        .map(|p| format!("{} on {} (id {})", p.program, p.attached_to, p.id))
        .collect();
    let _ = writeln!(
        out,
        "datapath build {} (layout {}, {} in-place upgrade(s)){}{}",
        d.build,
        d.layout_version,
        d.upgrades,
        if programs.is_empty() { "" } else { ": " },
        programs.join(", ")
    );
    for a in &report.attachments {
        let note = if a.fallback { " (fallback)" } else { "" };
        let _ = writeln!(out, "interface {} mode {}{}", a.interface, a.mode, note);
    }
    let g = &report.global;
    let _ = writeln!(
        out,
        "seen {} packets: {} to no range, {} malformed, {} internal errors, {} later fragments let through",
        g.packets, g.non_vip_packets, g.malformed_packets, g.internal_errors, g.fragments
    );
    let decapsulated: Vec<String> = g
        .decapsulated
        .by_encap()
        .iter()
        .filter(|(_, packets)| *packets > 0)
        .map(|(encap, packets)| format!("{packets} {encap}"))
        .collect();
    if !decapsulated.is_empty() {
        let _ = writeln!(out, "decapsulated: {}", decapsulated.join(", "));
    }
    for (kind, count) in &report.drift_repairs {
        let _ = writeln!(out, "drift repaired: {kind} x{count}");
    }
    for problem in &report.drift_unrepaired {
        let _ = writeln!(out, "drift NOT repaired: {problem}");
    }
    let table = &report.sparse_table;
    let _ = writeln!(
        out,
        "sparse VIP table: {} slots per CPU, used {:?} ({:.0}% on the fullest CPU), of them idle {:?} ({:.0}% busy), {}, sweep {}",
        table.slots,
        table.used_per_cpu,
        table.fullest_cpu_ratio() * 100.0,
        table.idle_per_cpu,
        table.fullest_cpu_busy_ratio() * 100.0,
        match (table.keyed, table.hash.as_str()) {
            (false, _) => "unkeyed hash (upgraded from layout 6 or older)",
            (true, "multiply") => "keyed hash",
            (true, _) => "keyed fmix hash (upgraded from layout 9 or older)",
        },
        table.generation
    );
    let _ = writeln!(
        out,
        "\n{:<40} {:>12} {:>14} {:>12} {:>14}",
        "RANGE (CIDR) / VIP", "PACKETS", "BYTES", "DROPPED", "DROPPED BYTES"
    );
    for range in &report.ranges {
        let _ = writeln!(
            out,
            "{:<40} {:>12} {:>14} {:>12} {:>14}",
            format!("{} ({})", range.name, range.cidr),
            range.packets,
            range.bytes,
            range.dropped_packets,
            range.dropped_bytes
        );
        for vip in &range.vips {
            let _ = writeln!(
                out,
                "  {:<38} {:>12} {:>14} {:>12} {:>14}",
                if vip.declared {
                    format!("{} (declared)", vip.addr)
                } else {
                    vip.addr.to_string()
                },
                vip.packets,
                vip.bytes,
                vip.dropped_packets,
                vip.dropped_bytes
            );
        }
        if range.vips_omitted > 0 {
            let _ = writeln!(
                out,
                "  ({} quieter VIPs not shown, in the range's totals)",
                range.vips_omitted
            );
        }
        if range.sparse_overflow_packets > 0 {
            let _ = writeln!(
                out,
                "  {:<38} {:>12}",
                "(VIP table full: in the range only)", range.sparse_overflow_packets
            );
        }
        if let Some(pressure) = &range.sparse {
            sparse_rows(&mut out, pressure);
        }
        // Only where socket lookups are counted for the range: it steers, or
        // lookups reached it (an sk_lookup program is attached and the range
        // accepts locally). A count-only range would always show 0.
        let steers = report.steer.iter().any(|s| s.range == range.name);
        if steers || range.delivered_packets > 0 {
            let _ = writeln!(
                out,
                "  {:<38} {:>12}",
                "(delivered to a socket lookup)", range.delivered_packets
            );
        }
    }
    if !report.steer.is_empty() {
        let _ = writeln!(out, "\n{:<56} {:>6} {:>12}", "STEER", "STATE", "STEERED");
    }
    for steer in &report.steer {
        let _ = writeln!(
            out,
            "{:<56} {:>6} {:>12}",
            format!("{} {} -> {}", steer.range, steer.matches, steer.to),
            if steer.up { "up" } else { "DOWN" },
            steer.packets
        );
    }
    announcements(&mut out, &report.bgp);
    for session in &report.bgp_sessions {
        let _ = writeln!(
            out,
            "BGP session with {}: {}",
            session.neighbor, session.info
        );
    }
    out
}

/// The BGP table: each announced range's phase and why, then its checks.
fn announcements(out: &mut String, bgp: &[crate::status::AnnounceStatus]) {
    use crate::status::Phase;
    if bgp.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{:<40} {:>10}  WHY", "BGP", "STATE");
    for range in bgp {
        let phase = match range.phase {
            Phase::Announced => "announced",
            Phase::Draining => "draining",
            Phase::Withdrawn => "withdrawn",
        };
        let _ = writeln!(
            out,
            "{:<40} {:>10}  {}",
            format!("{} {}", range.range, range.cidr),
            phase,
            range.reason
        );
        for check in &range.health {
            let _ = writeln!(
                out,
                "  {:<38} {:>10}{}",
                format!("health {}", check.check),
                if check.up { "up" } else { "DOWN" },
                check
                    .failure
                    .as_ref()
                    .map(|why| format!("  {why}"))
                    .unwrap_or_default()
            );
        }
    }
}

/// A sparse range's rows that are in no VIP, and its share of the table.
fn sparse_rows(out: &mut String, pressure: &super::SparsePressure) {
    for (label, packets) in [
        (
            "(rows reclaimed: in the range only)",
            pressure.reclaimed_packets,
        ),
        (
            "(not learned: in the range only)",
            pressure.unlearned_packets,
        ),
    ] {
        if packets > 0 {
            let _ = writeln!(out, "  {label:<38} {packets:>12}");
        }
    }
    let _ = writeln!(
        out,
        "  (sparse slots {}, {} learned, {} reclaimed, {} declared)",
        slots_per_cpu(&pressure.slots_per_cpu),
        pressure.slots_learned,
        pressure.slots_reclaimed,
        pressure.declared_vips
    );
}

/// Each CPU's count where there are few CPUs; on a host with many, the
/// fullest CPU's (`--json` has every CPU's).
fn slots_per_cpu(slots: &[u64]) -> String {
    const LISTED: usize = 16;
    if slots.len() <= LISTED {
        return format!("per CPU {slots:?}");
    }
    let (cpu, most) = slots
        .iter()
        .enumerate()
        .max_by_key(|&(cpu, slots)| (slots, std::cmp::Reverse(cpu)))
        .expect("more than 16 CPUs");
    format!("{most} on CPU {cpu}, the fullest of {}", slots.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{RangeReport, SteerReport};

    #[test]
    fn many_cpus_show_the_fullest_one() {
        assert_eq!(slots_per_cpu(&[3, 9]), "per CPU [3, 9]");
        let mut slots = vec![5; 128];
        slots[40] = 12;
        slots[90] = 12;
        assert_eq!(slots_per_cpu(&slots), "12 on CPU 40, the fullest of 128");
    }

    const DELIVERED: &str = "(delivered to a socket lookup)";

    fn range(name: &str, delivered_packets: u64) -> RangeReport {
        RangeReport {
            name: name.to_string(),
            cidr: "192.0.2.0/24".to_string(),
            packets: 10,
            delivered_packets,
            ..RangeReport::default()
        }
    }

    #[test]
    fn the_delivered_row_shows_for_steering_ranges_and_counted_lookups_only() {
        let report = Report {
            ranges: vec![
                range("count-only", 0),
                range("steered", 0),
                range("looked-up", 7),
            ],
            steer: vec![SteerReport {
                range: "steered".to_string(),
                matches: "tcp/80".to_string(),
                to: "127.0.0.1:8080".to_string(),
                ..SteerReport::default()
            }],
            ..Report::default()
        };
        let text = table(&report);
        let rows: Vec<&str> = text.lines().collect();
        let after = |name: &str| {
            let at = rows.iter().position(|l| l.starts_with(name)).unwrap();
            rows[at + 1]
        };
        assert!(!after("count-only").contains(DELIVERED), "{text}");
        assert!(after("steered").contains(DELIVERED), "{text}");
        assert!(after("looked-up").contains(DELIVERED), "{text}");
        assert!(after("looked-up").trim_end().ends_with(" 7"), "{text}");
        assert_eq!(text.matches(DELIVERED).count(), 2, "{text}");
    }

    #[test]
    fn the_bgp_table_shows_each_range_its_reason_checks_and_sessions() {
        use crate::status::{AnnounceStatus, HealthStatus, Phase, Session};
        let report = Report {
            bgp: vec![AnnounceStatus {
                range: "web".to_string(),
                cidr: "192.0.2.0/24".parse().unwrap(),
                phase: Phase::Withdrawn,
                reason: "health check tcp:198.18.1.2:80 down: no connection within 500 ms"
                    .to_string(),
                transitions: 2,
                health: vec![HealthStatus {
                    check: "tcp:198.18.1.2:80".to_string(),
                    up: false,
                    failure: Some("no connection within 500 ms".to_string()),
                    transitions: 1,
                }],
            }],
            bgp_sessions: vec![Session {
                neighbor: "198.18.1.1".parse().unwrap(),
                established: true,
                info: "Established".to_string(),
            }],
            ..Report::default()
        };
        let text = table(&report);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("BGP "))
            .expect(&text);
        assert_eq!(
            lines[at + 1],
            format!(
                "{:<40} {:>10}  health check tcp:198.18.1.2:80 down: no connection within 500 ms",
                "web 192.0.2.0/24", "withdrawn"
            )
        );
        assert_eq!(
            lines[at + 2],
            format!(
                "  {:<38} {:>10}  no connection within 500 ms",
                "health tcp:198.18.1.2:80", "DOWN"
            )
        );
        assert_eq!(lines[at + 3], "BGP session with 198.18.1.1: Established");
    }
}
