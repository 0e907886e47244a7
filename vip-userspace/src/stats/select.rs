//! What `vip stats RANGE... --top N` keeps of a [`Report`]: the named ranges
//! (with their steer targets and announcements), and each range's busiest VIPs.
//! Range totals always count every VIP; what `--top` leaves out is counted in
//! [`RangeReport::vips_omitted`].

use super::{RangeReport, Report, VipReport};
use crate::errors::Blame;

/// The operator's choice of ranges and VIP rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Range names; empty: every range.
    pub ranges: Vec<String>,
    /// At most this many VIP rows per range, busiest first; `None`: all, by
    /// address.
    pub top: Option<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("no range named {name:?} in the running datapath (vip stats without names lists every range)")]
    NoSuchRange { name: String },
}

impl Blame for SelectError {
    fn is_user_error(&self) -> bool {
        true
    }
}

impl Selection {
    /// Checks every name against `report` first, so that a typo is an error
    /// rather than an empty table.
    pub fn apply(&self, report: &mut Report) -> Result<(), SelectError> {
        self.check(report)?;
        self.keep_ranges(report);
        if let Some(top) = self.top {
            for range in &mut report.ranges {
                keep_busiest(range, top);
            }
        }
        Ok(())
    }

    /// An error for the first name `report` does not have.
    pub fn check(&self, report: &Report) -> Result<(), SelectError> {
        match self.missing(report).first() {
            Some(name) => Err(SelectError::NoSuchRange {
                name: name.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The names `report` does not have (a reload may remove a range while
    /// `--watch` runs).
    pub fn missing<'a>(&'a self, report: &Report) -> Vec<&'a str> {
        self.ranges
            .iter()
            .filter(|name| report.range(name).is_none())
            .map(String::as_str)
            .collect()
    }

    /// Only the named ranges that `report` has, with their steer targets and
    /// announcements; every range when no name was given.
    pub fn keep_ranges(&self, report: &mut Report) {
        if self.ranges.is_empty() {
            return;
        }
        let chosen = |range: &String| self.ranges.contains(range);
        report.ranges.retain(|r| chosen(&r.name));
        report.steer.retain(|s| chosen(&s.range));
        report.bgp.retain(|a| chosen(&a.range));
    }
}

/// Only the range's `top` busiest VIPs, busiest first.
fn keep_busiest(range: &mut RangeReport, top: usize) {
    let kept: Vec<VipReport> = range.busiest(top).into_iter().cloned().collect();
    range.vips_omitted += (range.vips.len() - kept.len()) as u64;
    range.vips = kept;
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::stats::SteerReport;

    fn vip(addr: &str, packets: u64, dropped_packets: u64) -> VipReport {
        VipReport {
            addr: addr.parse().unwrap(),
            packets,
            bytes: packets * 100,
            dropped_packets,
            dropped_bytes: dropped_packets * 100,
            declared: false,
        }
    }

    fn report() -> Report {
        let range = |name: &str, vips: Vec<VipReport>| RangeReport {
            name: name.to_string(),
            cidr: "192.0.2.0/24".to_string(),
            packets: vips.iter().map(|v| v.packets).sum(),
            dropped_packets: vips.iter().map(|v| v.dropped_packets).sum(),
            vips,
            ..RangeReport::default()
        };
        Report {
            ranges: vec![
                range(
                    "web",
                    vec![
                        vip("192.0.2.1", 4, 0),
                        vip("192.0.2.7", 2, 5),
                        vip("192.0.2.9", 7, 0),
                        vip("192.0.2.200", 1, 0),
                    ],
                ),
                range("dns", vec![vip("192.0.2.53", 3, 0)]),
            ],
            steer: vec![
                SteerReport {
                    range: "web".to_string(),
                    ..SteerReport::default()
                },
                SteerReport {
                    range: "dns".to_string(),
                    ..SteerReport::default()
                },
            ],
            ..Report::default()
        }
    }

    fn addrs(range: &RangeReport) -> Vec<IpAddr> {
        range.vips.iter().map(|v| v.addr).collect()
    }

    #[test]
    fn no_names_and_no_top_keep_everything_as_it_was() {
        let mut kept = report();
        Selection::default().apply(&mut kept).unwrap();
        assert_eq!(kept, report());
    }

    #[test]
    fn names_keep_their_ranges_and_steer_targets() {
        let mut kept = report();
        let selection = Selection {
            ranges: vec!["dns".to_string()],
            top: None,
        };
        selection.apply(&mut kept).unwrap();
        assert_eq!(kept.ranges, vec![report().ranges[1].clone()]);
        assert_eq!(kept.steer, vec![report().steer[1].clone()]);
    }

    #[test]
    fn top_keeps_the_busiest_first_and_counts_the_rest_but_not_out_of_the_totals() {
        let mut kept = report();
        let selection = Selection {
            ranges: Vec::new(),
            top: Some(2),
        };
        selection.apply(&mut kept).unwrap();
        let web = kept.range("web").unwrap();
        // .7 has 2 accepted and 5 dropped: 7 packets, as .9 has; the lower address first.
        assert_eq!(
            addrs(web),
            ["192.0.2.7", "192.0.2.9"].map(|a| a.parse::<IpAddr>().unwrap())
        );
        assert_eq!(web.vips_omitted, 2);
        assert_eq!((web.packets, web.dropped_packets), (14, 5));
        let dns = kept.range("dns").unwrap();
        assert_eq!(dns.vips.len(), 1);
        assert_eq!(dns.vips_omitted, 0);
    }

    #[test]
    fn ranges_a_reload_removed_are_missing_and_the_others_kept() {
        let mut kept = report();
        let selection = Selection {
            ranges: vec!["gone".to_string(), "dns".to_string(), "also".to_string()],
            top: None,
        };
        assert_eq!(selection.missing(&kept), ["gone", "also"]);
        selection.keep_ranges(&mut kept);
        assert_eq!(kept.ranges, vec![report().ranges[1].clone()]);
        assert_eq!(kept.steer, vec![report().steer[1].clone()]);
    }

    #[test]
    fn an_unknown_name_is_an_error_that_changes_nothing() {
        let mut kept = report();
        let selection = Selection {
            ranges: vec!["web".to_string(), "wbe".to_string()],
            top: Some(1),
        };
        assert_eq!(
            selection.apply(&mut kept),
            Err(SelectError::NoSuchRange {
                name: "wbe".to_string()
            })
        );
        assert_eq!(kept, report());
        assert_eq!(
            SelectError::NoSuchRange {
                name: "wbe".to_string()
            }
            .to_string(),
            "no range named \"wbe\" in the running datapath (vip stats without names lists every range)"
        );
    }
}
