//! An address scan against a sparse range, in a netns lab: a client sends one
//! frame each to 2,048 random addresses of an IPv6 /64 (32 times the table's
//! capacity of 64 VIPs), with frames to two declared VIPs among them, then a
//! late VIP starts receiving traffic.
//!
//! Checked: declared VIPs are exact after every round of the scan; the scan
//! fills the table (overflow); the late VIP gets a row within
//! `sparse_idle_seconds` plus one sweep of the scan's end, and from then on
//! counts exactly; range totals equal what was sent at every step.

use std::{
    net::{IpAddr, Ipv6Addr},
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use vip_tests::{
    daemon::{number, Daemon, Instance},
    netns::Lab,
    packets::FrameSpec,
    root::require_root,
};

const IDLE_SECONDS: u64 = 2;
const SCAN_ROUNDS: usize = 8;
const SCAN_PER_ROUND: usize = 256;
const DECLARED: [(&str, u64); 2] = [("2001:db8:1::a", 1), ("2001:db8:1::b", 2)];
const LATE: &str = "2001:db8:1::1:1";
const FRAME_LEN: u64 = 100;

fn config() -> String {
    format!(
        r#"
interfaces = ["{}"]
sparse_vip_capacity = 64
sparse_idle_seconds = {IDLE_SECONDS}

[[range]]
name = "scan6"
cidr = "2001:db8:1::/64"
vips = ["2001:db8:1::a", "2001:db8:1::b"]
"#,
        Lab::SERVER_IF
    )
}

fn frame(addr: IpAddr) -> Vec<u8> {
    FrameSpec::udp(addr, 53)
        .frame_len(FRAME_LEN as usize)
        .build()
}

fn range(stats: &Value) -> &Value {
    &stats["ranges"][0]
}

fn vip_packets(stats: &Value, addr: &str) -> Option<u64> {
    let addr: IpAddr = addr.parse().unwrap();
    range(stats)["vips"]
        .as_array()
        .expect("vips")
        .iter()
        .find(|v| v["addr"].as_str().unwrap().parse::<IpAddr>().unwrap() == addr)
        .map(|v| number(v, "packets"))
}

#[test]
fn a_scan_cannot_blind_per_vip_accounting() {
    if !require_root("a_scan_cannot_blind_per_vip_accounting") {
        return;
    }
    let lab = Lab::new("scan");
    let instance = Instance::new("scan");
    let daemon = Daemon::start(&lab.server, &config(), &instance);
    let mut rng = StdRng::seed_from_u64(18);
    let mut sent = 0u64;
    for round in 1..=SCAN_ROUNDS {
        let mut frames: Vec<Vec<u8>> = (0..SCAN_PER_ROUND)
            .map(|_| {
                let host: u64 = rng.gen_range(1 << 20..u64::MAX);
                let addr = (0x2001_0db8_0001_0000u128 << 64) | u128::from(host);
                frame(IpAddr::V6(Ipv6Addr::from(addr)))
            })
            .collect();
        for (addr, per_round) in DECLARED {
            for _ in 0..per_round {
                frames.insert(rng.gen_range(0..frames.len()), frame(addr.parse().unwrap()));
            }
        }
        sent += frames.len() as u64;
        lab.client.send_frames(Lab::CLIENT_IF, frames);
        let stats = daemon.stats_once_counted(sent);
        assert_eq!(
            number(range(&stats), "packets"),
            sent,
            "range total, round {round}"
        );
        for (addr, per_round) in DECLARED {
            assert_eq!(
                vip_packets(&stats, addr),
                Some(per_round * round as u64),
                "declared {addr} is exact in round {round}"
            );
        }
    }
    let scan_end = daemon.stats_once_counted(sent);
    let overflow_at_end = number(range(&scan_end), "sparse_overflow_packets");
    assert!(
        overflow_at_end > 0,
        "the scan filled the table: {:#}",
        range(&scan_end)
    );
    let scan_ended = Instant::now();

    // The late VIP: a frame every 100 ms until it has a row.
    let late: IpAddr = LATE.parse().unwrap();
    let mut late_sent = 0u64;
    let row_after = loop {
        lab.client.send_frames(Lab::CLIENT_IF, vec![frame(late)]);
        late_sent += 1;
        let stats = daemon.stats_once_counted(sent + late_sent);
        if vip_packets(&stats, LATE).is_some() {
            break scan_ended.elapsed();
        }
        assert!(
            scan_ended.elapsed() < Duration::from_secs(IDLE_SECONDS * 3),
            "no row for {LATE} {:?} after the scan: {:#}",
            scan_ended.elapsed(),
            range(&stats)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Idle time plus one sweep (half of it), and a second for this loop.
    let limit = Duration::from_millis(IDLE_SECONDS * 1500 + 1000);
    assert!(
        row_after <= limit,
        "row after {row_after:?}, limit {limit:?}"
    );

    // From its row on, every frame to it counts there.
    lab.client
        .send_frames(Lab::CLIENT_IF, (0..50).map(|_| frame(late)).collect());
    late_sent += 50;
    let total = sent + late_sent;
    let stats = daemon.stats_once_counted(total);
    let range = range(&stats);
    let row = vip_packets(&stats, LATE).expect("the late VIP's row");
    let late_overflow = number(range, "sparse_overflow_packets") - overflow_at_end;
    assert_eq!(
        row + late_overflow,
        late_sent,
        "the late VIP's frames: {row} in its row, {late_overflow} before it had one"
    );
    assert!(row >= 50, "{row}");
    assert_eq!(number(range, "packets"), total, "range total");
    assert_eq!(number(range, "bytes"), total * FRAME_LEN, "range bytes");
    for (addr, per_round) in DECLARED {
        assert_eq!(
            vip_packets(&stats, addr),
            Some(per_round * SCAN_ROUNDS as u64)
        );
    }
    let pressure = &range["sparse"];
    assert!(number(pressure, "slots_reclaimed") >= 1, "{pressure:#}");
    assert!(number(pressure, "reclaimed_packets") >= 1, "{pressure:#}");
    assert_eq!(number(pressure, "declared_vips"), 2, "{pressure:#}");
    let table = &stats["sparse_table"];
    assert_eq!(number(table, "slots"), 128, "{table:#}");
    assert!(table["keyed"].as_bool().unwrap(), "{table:#}");
    println!(
        "scan: {sent} frames, overflow {overflow_at_end}; late VIP's row after {row_after:?}; {pressure}"
    );
    daemon.stop();
}
