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
        "seen {} packets: {} to no range, {} malformed, {} internal errors\n",
        g.packets, g.non_vip_packets, g.malformed_packets, g.internal_errors
    );
    let _ = writeln!(
        out,
        "{:<24} {:<40} {:>14} {:>16}",
        "RANGE / VIP", "CIDR", "PACKETS", "BYTES"
    );
    for range in &report.ranges {
        let _ = writeln!(
            out,
            "{:<24} {:<40} {:>14} {:>16}",
            range.name, range.cidr, range.packets, range.bytes
        );
        for vip in &range.vips {
            let _ = writeln!(
                out,
                "  {:<63} {:>14} {:>16}",
                vip.addr.to_string(),
                vip.packets,
                vip.bytes
            );
        }
        if range.sparse_overflow_packets > 0 {
            let _ = writeln!(
                out,
                "  {:<63} {:>14}",
                "(VIP table full: counted in the range only)", range.sparse_overflow_packets
            );
        }
    }
    out
}
