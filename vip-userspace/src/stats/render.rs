//! The human-readable `vip stats` table.

use std::fmt::Write;

use super::Report;

pub fn table(report: &Report) -> String {
    let mut out = String::new();
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
                vip.addr.to_string(),
                vip.packets,
                vip.bytes,
                vip.dropped_packets,
                vip.dropped_bytes
            );
        }
        if range.sparse_overflow_packets > 0 {
            let _ = writeln!(
                out,
                "  {:<38} {:>12}",
                "(VIP table full: in the range only)", range.sparse_overflow_packets
            );
        }
        let _ = writeln!(
            out,
            "  {:<38} {:>12}",
            "(delivered to a socket lookup)", range.delivered_packets
        );
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
    out
}
