//! Rates between two reports, for `vip stats --watch`.

use std::{collections::HashMap, fmt::Write, net::IpAddr};

use super::{RangeReport, Report, VipReport};

/// Per second, over the interval between two reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rate {
    pub packets: f64,
    pub bits: f64,
    pub drops: f64,
}

impl Rate {
    fn between(now: Totals, before: Totals, seconds: f64) -> Rate {
        // A counter that went backwards was reset (its range was reloaded away
        // and back): rate from zero.
        let delta = |now: u64, before: u64| now.checked_sub(before).unwrap_or(now) as f64;
        Rate {
            packets: delta(now.packets, before.packets) / seconds,
            bits: delta(now.bytes, before.bytes) * 8.0 / seconds,
            drops: delta(now.drops, before.drops) / seconds,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Totals {
    packets: u64,
    bytes: u64,
    drops: u64,
}

fn range_totals(r: &RangeReport) -> Totals {
    Totals {
        packets: r.packets + r.dropped_packets,
        bytes: r.bytes + r.dropped_bytes,
        drops: r.dropped_packets,
    }
}

fn vip_totals(v: &VipReport) -> Totals {
    Totals {
        packets: v.packets + v.dropped_packets,
        bytes: v.bytes + v.dropped_bytes,
        drops: v.dropped_packets,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RangeRate {
    pub name: String,
    pub cidr: String,
    pub rate: Rate,
    /// Busiest first.
    pub vips: Vec<(IpAddr, Rate)>,
}

/// Ranges and their VIPs with their rates, busiest first (ties by name or address).
pub fn rates(before: &Report, now: &Report, seconds: f64) -> Vec<RangeRate> {
    let seconds = seconds.max(1e-3);
    let mut ranges: Vec<RangeRate> = now
        .ranges
        .iter()
        .map(|range| {
            let old = before.range(&range.name).filter(|r| r.cidr == range.cidr);
            let old_vips: HashMap<IpAddr, &VipReport> = old
                .map(|r| r.vips.iter().map(|v| (v.addr, v)).collect())
                .unwrap_or_default();
            let mut vips: Vec<(IpAddr, Rate)> = range
                .vips
                .iter()
                .map(|vip| {
                    let was = old_vips.get(&vip.addr).map(|v| vip_totals(v));
                    (
                        vip.addr,
                        Rate::between(vip_totals(vip), was.unwrap_or_default(), seconds),
                    )
                })
                .collect();
            vips.sort_by(|a, b| b.1.packets.total_cmp(&a.1.packets).then(a.0.cmp(&b.0)));
            RangeRate {
                name: range.name.clone(),
                cidr: range.cidr.clone(),
                rate: Rate::between(
                    range_totals(range),
                    old.map(range_totals).unwrap_or_default(),
                    seconds,
                ),
                vips,
            }
        })
        .collect();
    ranges.sort_by(|a, b| {
        b.rate
            .packets
            .total_cmp(&a.rate.packets)
            .then(a.name.cmp(&b.name))
    });
    ranges
}

/// 1234567.0 -> "1.23M".
fn si(value: f64) -> String {
    match value {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.2}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// The watch screen: a header, then ranges and their VIPs, at most `rows` lines.
pub fn screen(ranges: &[RangeRate], header: &str, rows: usize) -> Vec<String> {
    let mut lines = vec![
        header.to_string(),
        format!(
            "{:<44} {:>10} {:>10} {:>10}",
            "RANGE (CIDR) / VIP", "PKT/S", "BIT/S", "DROP/S"
        ),
    ];
    let row = |label: String, rate: &Rate| {
        let mut line = String::new();
        let _ = write!(
            line,
            "{label:<44} {:>10} {:>10} {:>10}",
            si(rate.packets),
            si(rate.bits),
            si(rate.drops)
        );
        line
    };
    for range in ranges {
        lines.push(row(format!("{} ({})", range.name, range.cidr), &range.rate));
        for (addr, rate) in &range.vips {
            lines.push(row(format!("  {addr}"), rate));
        }
    }
    lines.truncate(rows.max(2));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(web: &[(&str, u64, u64)], other_packets: u64) -> Report {
        let vips: Vec<VipReport> = web
            .iter()
            .map(|(addr, packets, dropped)| VipReport {
                addr: addr.parse().unwrap(),
                packets: *packets,
                bytes: packets * 100,
                dropped_packets: *dropped,
                dropped_bytes: dropped * 100,
                declared: false,
            })
            .collect();
        let web = RangeReport {
            name: "web".into(),
            cidr: "192.0.2.0/24".into(),
            packets: vips.iter().map(|v| v.packets).sum(),
            bytes: vips.iter().map(|v| v.bytes).sum(),
            dropped_packets: vips.iter().map(|v| v.dropped_packets).sum(),
            dropped_bytes: vips.iter().map(|v| v.dropped_bytes).sum(),
            vips,
            ..RangeReport::default()
        };
        let other = RangeReport {
            name: "other".into(),
            cidr: "198.51.100.0/24".into(),
            packets: other_packets,
            ..RangeReport::default()
        };
        Report {
            ranges: vec![other, web],
            ..Report::default()
        }
    }

    #[test]
    fn rates_are_deltas_per_second_sorted_busiest_first() {
        let before = report(&[("192.0.2.1", 10, 0), ("192.0.2.2", 100, 4)], 50);
        let now = report(
            &[
                ("192.0.2.1", 30, 0),
                ("192.0.2.2", 120, 24),
                ("192.0.2.3", 80, 0),
            ],
            52,
        );
        let ranges = rates(&before, &now, 2.0);
        assert_eq!(ranges[0].name, "web");
        assert_eq!(
            ranges[0].rate,
            Rate {
                packets: 70.0,
                bits: 70.0 * 800.0,
                drops: 10.0
            }
        );
        let order: Vec<(String, f64)> = ranges[0]
            .vips
            .iter()
            .map(|(a, r)| (a.to_string(), r.packets))
            .collect();
        assert_eq!(
            order,
            [
                ("192.0.2.3".to_string(), 40.0),
                ("192.0.2.2".to_string(), 20.0),
                ("192.0.2.1".to_string(), 10.0)
            ]
        );
        assert_eq!(ranges[1].rate.packets, 1.0);
    }

    #[test]
    fn the_screen_fits_the_terminal() {
        let now = report(&[("192.0.2.1", 30, 0)], 2_500_000);
        let lines = screen(&rates(&Report::default(), &now, 1.0), "vip", 3);
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with("other (198.51.100.0/24)"), "{lines:?}");
        assert!(lines[2].contains("2.50M"), "{lines:?}");
    }
}
