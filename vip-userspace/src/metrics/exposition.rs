//! The metric families of one scrape, encoded with prometheus-client from a
//! [`Report`] read just before.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::SeriesPolicy;
use crate::stats::{RangeReport, Report, VipReport};

/// Everything one scrape reports.
#[derive(Debug)]
pub struct Snapshot {
    pub report: Report,
    pub policy: SeriesPolicy,
}

/// The exposition formats a scraper may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, which Prometheus asks for first.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 (curl, promtool).
    PrometheusText,
}

impl Format {
    /// From an HTTP `Accept` header.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// `snapshot` in `format`.
pub fn encode(snapshot: Snapshot, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut text = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &registry),
        Format::PrometheusText => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        }
    }
    .expect("writing to a String cannot fail");
    text
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: its name (counters get `_total` when encoded), help and
/// series.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn info(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = Labels>,
) -> Result<(), std::fmt::Error> {
    gauges(encoder, name, help, series.into_iter().map(|l| (l, 1)))
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The sparse VIP table's pressure: how full each CPU's copy is, and what
/// reclaim and learning did, per range.
/// The anycast announcement: which ranges this server announces, and why not.
fn announcements(
    encoder: &mut DescriptorEncoder,
    bgp: &[crate::status::AnnounceStatus],
) -> Result<(), std::fmt::Error> {
    use crate::status::Phase;
    gauges(
        encoder,
        "vip_announced",
        "1 while the range is announced over BGP (draining included), 0 when withdrawn.",
        bgp.iter().map(|r| {
            (
                vec![("range", r.range.clone())],
                i64::from(r.phase != Phase::Withdrawn),
            )
        }),
    )?;
    gauges(
        encoder,
        "vip_draining",
        "1 while the range is announced with the graceful-shutdown community before its withdrawal.",
        bgp.iter().map(|r| {
            (
                vec![("range", r.range.clone())],
                i64::from(r.phase == Phase::Draining),
            )
        }),
    )?;
    counters(
        encoder,
        "vip_announce_transitions",
        "Changes of a range's announcement (announced, draining, withdrawn) since vip run started.",
        bgp.iter()
            .map(|r| (vec![("range", r.range.clone())], r.transitions)),
    )?;
    gauges(
        encoder,
        "vip_health_up",
        "1 while the health check passes (after rise/fall), else 0.",
        bgp.iter().flat_map(|r| {
            r.health.iter().map(move |c| {
                (
                    vec![("range", r.range.clone()), ("check", c.check.clone())],
                    i64::from(c.up),
                )
            })
        }),
    )?;
    counters(
        encoder,
        "vip_health_transitions",
        "Changes of a health check between up and down since vip run started.",
        bgp.iter().flat_map(|r| {
            r.health.iter().map(move |c| {
                (
                    vec![("range", r.range.clone()), ("check", c.check.clone())],
                    c.transitions,
                )
            })
        }),
    )
}

/// One unlabelled gauge of a ratio.
fn ratio(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    ConstGauge::new(value).encode(family.encode_family(&Labels::new())?)
}

fn sparse_table(encoder: &mut DescriptorEncoder, report: &Report) -> Result<(), std::fmt::Error> {
    let table = &report.sparse_table;
    ratio(
        encoder,
        "vip_sparse_table_fullest_cpu_ratio",
        "Used slots over slots in the sparse VIP table, on the CPU where it is fullest (a scan leaves it near 1 until new VIPs take the idle slots over).",
        table.fullest_cpu_ratio(),
    )?;
    ratio(
        encoder,
        "vip_sparse_table_fullest_cpu_busy_ratio",
        "Slots of VIPs that saw a packet within sparse_idle_seconds over slots in the sparse VIP table, on the CPU with the most (alert when it stays near 1: idle VIPs' slots are taken over, busy ones' are not).",
        table.fullest_cpu_busy_ratio(),
    )?;
    gauges(
        encoder,
        "vip_sparse_table_slots",
        "Slots per CPU of the sparse VIP table.",
        [(
            Labels::new(),
            i64::try_from(table.slots).unwrap_or(i64::MAX),
        )],
    )?;
    let sparse: Vec<(&RangeReport, &crate::stats::SparsePressure)> = report
        .ranges
        .iter()
        .filter_map(|r| r.sparse.as_ref().map(|p| (r, p)))
        .collect();
    // One series per range, not per range and CPU: a host with 128 possible
    // CPUs would export 128 for each (`vip stats --json` has them all).
    gauges(
        encoder,
        "vip_sparse_slots_max_cpu",
        "Slots of the sparse VIP table holding a range's VIPs, on the CPU where it holds the most.",
        sparse.iter().map(|(range, pressure)| {
            let most = pressure.slots_per_cpu.iter().copied().max().unwrap_or(0);
            (
                vec![("range", range.name.clone())],
                i64::try_from(most).unwrap_or(i64::MAX),
            )
        }),
    )?;
    let per_range = |value: fn(&crate::stats::SparsePressure) -> u64| {
        sparse
            .iter()
            .map(move |(range, pressure)| (vec![("range", range.name.clone())], value(pressure)))
    };
    counters(
        encoder,
        "vip_sparse_slots_learned",
        "Slots of the sparse VIP table a range's VIPs took.",
        per_range(|p| p.slots_learned),
    )?;
    counters(
        encoder,
        "vip_sparse_slots_reclaimed",
        "Slots of a range's VIPs reclaimed after sparse_idle_seconds without a packet (their counts stay in the range's).",
        per_range(|p| p.slots_reclaimed),
    )?;
    counters(
        encoder,
        "vip_sparse_reclaimed_packets",
        "Packets of VIPs whose rows were reclaimed: in the range's totals, in no VIP's.",
        per_range(|p| p.reclaimed_packets),
    )?;
    counters(
        encoder,
        "vip_sparse_unlearned_packets",
        "Packets to addresses a range does not learn (learn = false): in the range's totals only.",
        per_range(|p| p.unlearned_packets),
    )
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let report = &self.report;
        let per_vip: Vec<(&RangeReport, &VipReport)> = report
            .ranges
            .iter()
            .flat_map(|range| {
                range
                    .busiest(self.policy.max_vip_series(&range.name))
                    .into_iter()
                    .map(move |vip| (range, vip))
            })
            .collect();
        // Each address written once for its four series, and labels that
        // borrow: a scrape may carry hundreds of thousands of these.
        let addresses: Vec<String> = per_vip
            .iter()
            .map(|(_, vip)| vip.addr.to_string())
            .collect();
        let vip_series = |value: fn(&VipReport, bool) -> u64| {
            per_vip
                .iter()
                .zip(&addresses)
                .flat_map(move |((range, vip), address)| {
                    [("accepted", false), ("dropped", true)].map(|(verdict, dropped)| {
                        (
                            [
                                ("range", range.name.as_str()),
                                ("vip", address.as_str()),
                                ("verdict", verdict),
                            ],
                            value(vip, dropped),
                        )
                    })
                })
        };
        counters(
            &mut encoder,
            "vip_packets",
            "Packets to a VIP, by verdict (per-VIP series of ranges with per_vip_metrics, busiest max_vip_series).",
            vip_series(|v, dropped| if dropped { v.dropped_packets } else { v.packets }),
        )?;
        counters(
            &mut encoder,
            "vip_bytes",
            "Frame bytes to a VIP, by verdict.",
            vip_series(|v, dropped| if dropped { v.dropped_bytes } else { v.bytes }),
        )?;
        let range_series = |value: fn(&RangeReport, bool) -> u64| {
            report.ranges.iter().flat_map(move |range| {
                [("accepted", false), ("dropped", true)].map(|(verdict, dropped)| {
                    (
                        [("range", range.name.as_str()), ("verdict", verdict)],
                        value(range, dropped),
                    )
                })
            })
        };
        counters(
            &mut encoder,
            "vip_range_packets",
            "Packets to a range (all its VIPs), by verdict.",
            range_series(|r, dropped| {
                if dropped {
                    r.dropped_packets
                } else {
                    r.packets
                }
            }),
        )?;
        counters(
            &mut encoder,
            "vip_range_bytes",
            "Frame bytes to a range, by verdict.",
            range_series(|r, dropped| if dropped { r.dropped_bytes } else { r.bytes }),
        )?;
        counters(
            &mut encoder,
            "vip_delivered_packets",
            "Socket lookups for a range's VIPs that reached a socket vip knows of (steered, or with no steer entry): UDP datagrams and new TCP connections.",
            report
                .ranges
                .iter()
                .map(|r| (vec![("range", r.name.clone())], r.delivered_packets)),
        )?;
        let target = |s: &crate::stats::SteerReport| {
            vec![
                ("range", s.range.clone()),
                ("match", s.matches.clone()),
                ("to", s.to.clone()),
            ]
        };
        info(
            &mut encoder,
            "vip_datapath_info",
            "The running datapath: the vip version that serves it and the build id of its programs.",
            [vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("build", report.datapath.build.clone()),
            ]],
        )?;
        gauges(
            &mut encoder,
            "vip_datapath_program_id",
            "The kernel's id of each attached program (it changes when an upgrade replaces the program).",
            report.datapath.programs.iter().map(|p| {
                (
                    vec![
                        ("program", p.program.clone()),
                        ("attached_to", p.attached_to.clone()),
                    ],
                    i64::from(p.id),
                )
            }),
        )?;
        gauges(
            &mut encoder,
            "vip_steer_target_up",
            "1 when the steer target's socket was found and steering goes to it, else 0.",
            report.steer.iter().map(|s| (target(s), i64::from(s.up))),
        )?;
        counters(
            &mut encoder,
            "vip_steered_packets",
            "Socket lookups steered to a target (new TCP connections, UDP datagrams), by VIP.",
            report.steer.iter().flat_map(|s| {
                s.vips.iter().map(move |v| {
                    let mut labels = target(s);
                    labels.push(("vip", v.addr.to_string()));
                    (labels, v.packets)
                })
            }),
        )?;
        counters(
            &mut encoder,
            "vip_sparse_overflow_packets",
            "Packets of a sparse range counted in the range but in no VIP: every slot their address could take was busy.",
            report
                .ranges
                .iter()
                .map(|r| (vec![("range", r.name.clone())], r.sparse_overflow_packets)),
        )?;
        sparse_table(&mut encoder, report)?;
        let global = &report.global;
        for (name, help, value) in [
            (
                "vip_malformed_packets",
                "Frames with a header that cannot be read.",
                global.malformed_packets,
            ),
            (
                "vip_non_vip_packets",
                "Frames to no configured range, non-IP frames included.",
                global.non_vip_packets,
            ),
            (
                "vip_internal_errors",
                "Map lookups that cannot fail and did (a bug); the packets passed.",
                global.internal_errors,
            ),
            (
                "vip_fragments",
                "Non-first fragments let through to ranges with an allow list.",
                global.fragments,
            ),
        ] {
            counters(&mut encoder, name, help, [(Labels::new(), value)])?;
        }
        counters(
            &mut encoder,
            "vip_decapsulated_packets",
            "Tunnelled packets passed on as their inner packet, by tunnel (also counted for their inner VIP).",
            global
                .decapsulated
                .by_encap()
                .map(|(encap, packets)| (vec![("encap", encap.to_string())], packets)),
        )?;
        announcements(&mut encoder, &report.bgp)?;
        gauges(
            &mut encoder,
            "vip_bgp_session_up",
            "1 while the BGP speaker's session with the neighbor is established, else 0.",
            report.bgp_sessions.iter().map(|s| {
                (
                    vec![("neighbor", s.neighbor.to_string())],
                    i64::from(s.established),
                )
            }),
        )?;
        counters(
            &mut encoder,
            "vip_drift_repairs",
            "Host state put back after it changed from outside, by kind.",
            report
                .drift_repairs
                .iter()
                .map(|(kind, count)| (vec![("kind", kind.clone())], *count)),
        )?;
        gauges(
            &mut encoder,
            "vip_drift_unrepaired",
            "Owned host state that the drift repair cannot put back now (vip stats says what and why).",
            [(vec![], report.drift_unrepaired.len() as i64)],
        )?;
        info(
            &mut encoder,
            "vip_attach_info",
            "1 for each interface the datapath is attached to, with its mode and whether that mode is a fallback from the one tried first.",
            report.attachments.iter().map(|a| {
                vec![
                    ("interface", a.interface.clone()),
                    ("mode", a.mode.clone()),
                    ("fallback", a.fallback.to_string()),
                ]
            }),
        )?;
        info(
            &mut encoder,
            "vip_build_info",
            "1, with the version of vip.",
            [vec![("version", env!("CARGO_PKG_VERSION").to_string())]],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        stats::{AttachReport, VipReport},
        Config,
    };

    fn vip(addr: &str, packets: u64) -> VipReport {
        VipReport {
            addr: addr.parse().unwrap(),
            packets,
            bytes: packets * 100,
            dropped_packets: 0,
            dropped_bytes: 0,
            declared: false,
        }
    }

    fn snapshot(config: &str) -> Snapshot {
        let config = Config::parse(config, std::path::Path::new("test")).unwrap();
        let range = |name: &str, vips: Vec<VipReport>| RangeReport {
            name: name.into(),
            packets: vips.iter().map(|v| v.packets).sum(),
            vips,
            ..RangeReport::default()
        };
        Snapshot {
            report: Report {
                ranges: vec![
                    range(
                        "web",
                        vec![
                            vip("192.0.2.1", 5),
                            vip("192.0.2.2", 9),
                            vip("192.0.2.3", 7),
                        ],
                    ),
                    range("v6", vec![vip("2001:db8::1", 3)]),
                ],
                attachments: vec![AttachReport {
                    interface: "eth0".into(),
                    mode: "native".into(),
                    fallback: false,
                }],
                ..Report::default()
            },
            policy: SeriesPolicy::from_config(&config),
        }
    }

    fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn per_vip_series_are_the_busiest_of_ranges_that_want_them() {
        let text = encode(
            snapshot(
                "[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\nmax_vip_series = 2\n\
                 [[range]]\nname = \"v6\"\ncidr = \"2001:db8::/64\"\n",
            ),
            Format::PrometheusText,
        );
        assert_eq!(
            lines(&text, "vip_packets_total{"),
            [
                "vip_packets_total{range=\"web\",vip=\"192.0.2.2\",verdict=\"accepted\"} 9",
                "vip_packets_total{range=\"web\",vip=\"192.0.2.2\",verdict=\"dropped\"} 0",
                "vip_packets_total{range=\"web\",vip=\"192.0.2.3\",verdict=\"accepted\"} 7",
                "vip_packets_total{range=\"web\",vip=\"192.0.2.3\",verdict=\"dropped\"} 0",
            ],
            "IPv6 ranges export no per-VIP series by default; web its 2 busiest"
        );
        assert_eq!(
            lines(&text, "vip_range_packets_total{"),
            [
                "vip_range_packets_total{range=\"web\",verdict=\"accepted\"} 21",
                "vip_range_packets_total{range=\"web\",verdict=\"dropped\"} 0",
                "vip_range_packets_total{range=\"v6\",verdict=\"accepted\"} 3",
                "vip_range_packets_total{range=\"v6\",verdict=\"dropped\"} 0",
            ],
            "range totals keep every VIP"
        );
        assert_eq!(
            lines(&text, "vip_attach_info"),
            ["vip_attach_info{interface=\"eth0\",mode=\"native\",fallback=\"false\"} 1"]
        );
        assert!(text.contains("# TYPE vip_packets_total counter"), "{text}");
    }

    /// An attachment in a mode that is not the one tried first says so, for
    /// the VipAttachFallback alert.
    #[test]
    fn an_attachment_that_fell_back_is_labelled() {
        let mut fell_back = snapshot("[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\n");
        fell_back.report.attachments[0].mode = "generic".into();
        fell_back.report.attachments[0].fallback = true;
        assert_eq!(
            lines(
                &encode(fell_back, Format::PrometheusText),
                "vip_attach_info"
            ),
            ["vip_attach_info{interface=\"eth0\",mode=\"generic\",fallback=\"true\"} 1"]
        );
    }

    #[test]
    fn per_vip_metrics_can_be_turned_on_and_off_per_range() {
        let text = encode(
            snapshot(
                "[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\nper_vip_metrics = false\n\
                 [[range]]\nname = \"v6\"\ncidr = \"2001:db8::/64\"\nper_vip_metrics = true\n",
            ),
            Format::OpenMetrics,
        );
        assert_eq!(
            lines(&text, "vip_packets_total{"),
            [
                "vip_packets_total{range=\"v6\",vip=\"2001:db8::1\",verdict=\"accepted\"} 3",
                "vip_packets_total{range=\"v6\",vip=\"2001:db8::1\",verdict=\"dropped\"} 0",
            ]
        );
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with EOF");
    }

    #[test]
    fn sparse_table_pressure_is_exported_per_range_and_per_cpu() {
        let mut snapshot =
            snapshot("[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\n[[range]]\nname = \"v6\"\ncidr = \"2001:db8::/64\"\n");
        snapshot.report.sparse_table = crate::stats::SparseTableReport {
            slots: 128,
            used_per_cpu: vec![32, 96],
            idle_per_cpu: vec![0, 72],
            keyed: true,
            hash: "multiply".to_string(),
            generation: 5,
        };
        snapshot.report.ranges[1].sparse = Some(crate::stats::SparsePressure {
            slots_per_cpu: vec![30, 90],
            slots_learned: 400,
            slots_reclaimed: 280,
            reclaimed_packets: 1234,
            unlearned_packets: 0,
            declared_vips: 2,
        });
        let text = encode(snapshot, Format::PrometheusText);
        assert_eq!(
            lines(&text, "vip_sparse_table_fullest_cpu_ratio"),
            ["vip_sparse_table_fullest_cpu_ratio 0.75"]
        );
        assert_eq!(
            lines(&text, "vip_sparse_table_fullest_cpu_busy_ratio"),
            ["vip_sparse_table_fullest_cpu_busy_ratio 0.25"],
            "CPU 0's 32 busy slots, not CPU 1's 96 used of which 72 idle"
        );
        assert_eq!(
            lines(&text, "vip_sparse_slots_max_cpu{"),
            ["vip_sparse_slots_max_cpu{range=\"v6\"} 90"],
            "sparse ranges only, CPU 1's 90 of 30 and 90"
        );
        assert!(lines(&text, "vip_sparse_slots{").is_empty());
        for (family, value) in [
            ("vip_sparse_slots_learned_total", 400),
            ("vip_sparse_slots_reclaimed_total", 280),
            ("vip_sparse_reclaimed_packets_total", 1234),
            ("vip_sparse_unlearned_packets_total", 0),
        ] {
            assert_eq!(
                lines(&text, &format!("{family}{{")),
                [format!("{family}{{range=\"v6\"}} {value}")]
            );
        }
        assert_eq!(
            lines(&text, "vip_sparse_table_slots "),
            ["vip_sparse_table_slots 128"]
        );
    }

    #[test]
    fn the_accept_header_picks_the_format() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::PrometheusText);
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
    }

    /// Every vip series that the shipped alert rules (deploy/vip-alerts.yml)
    /// read is one this exporter writes, under that name, once there is
    /// something of its kind (a steer target, an announced range with a
    /// health check, a BGP session). A rule on a misspelt name would never fire.
    #[test]
    fn every_series_the_shipped_alert_rules_read_is_exported() {
        use crate::{
            stats::SteerReport,
            status::{AnnounceStatus, HealthStatus, Phase, Session},
        };
        let mut snapshot = snapshot(
            "[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\n\
             [[range]]\nname = \"v6\"\ncidr = \"2001:db8::/64\"\n",
        );
        let report = &mut snapshot.report;
        report.steer.push(SteerReport {
            range: "web".into(),
            matches: "tcp/80".into(),
            to: "pid:1".into(),
            up: true,
            packets: 0,
            vips: Vec::new(),
        });
        report.bgp.push(AnnounceStatus {
            range: "web".into(),
            cidr: "192.0.2.0/24".parse().unwrap(),
            phase: Phase::Announced,
            reason: String::new(),
            transitions: 1,
            health: vec![HealthStatus {
                check: "tcp".into(),
                up: true,
                failure: None,
                transitions: 0,
            }],
        });
        report.bgp_sessions.push(Session {
            neighbor: "198.18.0.1".parse().unwrap(),
            established: true,
            info: "Established".into(),
        });
        let text = encode(snapshot, Format::PrometheusText);
        let exported: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let rules = include_str!("../../../deploy/vip-alerts.yml");
        let read: std::collections::BTreeSet<&str> = rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr: "))
            .flat_map(|expr| expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
            .filter(|word| word.starts_with("vip_"))
            .collect();
        assert_eq!(read.len(), 10, "the rules read {read:?}");
        let missing: Vec<&&str> = read.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "the alert rules read {missing:?}, which vip does not export:\n{text}"
        );
    }
}
