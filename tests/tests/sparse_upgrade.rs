//! The sparse table's hash key across the datapath's life: kept by restarts
//! (adoption) of a datapath vip created, so that every row stays where it is,
//! and by an upgrade in place from the older vip (layout 11, whose table is one
//! of 64-byte slots). The upgrade counts on in the split table of layout 12,
//! where each VIP learns a slot once; the older table stays, frozen, and its
//! rows are added to the new ones by address, so per-VIP counts stay exact.
//! Its range is a /112, which the older vip made sparse and the upgrade
//! keeps sparse (a new datapath of this vip would count it dense).
//!
//! The test thread is pinned to CPU 0, and so the threads that send its frames
//! (they inherit the mask): every frame is counted in CPU 0's table.

use std::net::{IpAddr, Ipv6Addr};

use serde_json::Value;
use vip_common::{
    SparseControl, V6Block, MAP_SPARSE_CONTROL, MAP_V6_BLOCKS, SPARSE_HASH_MULTIPLY,
    V6_BLOCK_DECLARED, V6_BLOCK_RANGE, V6_RANGE_DECLARED_COMPLETE,
};
use vip_tests::{
    daemon::{number, old_vip_bin, vip_bin, vip_verdicts, Daemon, Instance},
    fixture, http,
    netns::Lab,
    root::require_root,
};
use vip_userspace::datapath::pin;

const VIPS: usize = 20;
/// A range a new datapath of this vip counts dense (layout 13 on).
const BLOCK: &str = "2001:db8:1::/112";

fn config() -> String {
    config_with("2001:db8:1::/64")
}

fn config_with(cidr: &str) -> String {
    format!(
        "interfaces = [\"{}\"]\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"v6\"\ncidr = \"{cidr}\"\n",
        Lab::SERVER_IF
    )
}

/// `config()` with an allow list that lets nothing through.
fn config_dropping_all() -> String {
    format!("{}allow = []\n", config())
}

/// Accepted and dropped packets of each VIP row.
fn verdicts(stats: &Value) -> Vec<(IpAddr, u64, u64)> {
    vip_verdicts(range(stats))
}

fn vip(i: usize) -> IpAddr {
    format!("2001:db8:1::{:x}", 0x100 + i).parse().unwrap()
}

/// Sends `per_vip(i)` frames to VIP `i`, for every VIP; returns how many.
fn send(lab: &Lab, per_vip: impl Fn(usize) -> u64) -> u64 {
    let vips: Vec<IpAddr> = (0..VIPS).map(vip).collect();
    lab.send_udp(&vips, 53, per_vip)
}

fn range(stats: &Value) -> &Value {
    &stats["ranges"][0]
}

/// Accepted packets of each VIP row.
fn rows(stats: &Value) -> Vec<(IpAddr, u64)> {
    verdicts(stats)
        .into_iter()
        .map(|(addr, accepted, _)| (addr, accepted))
        .collect()
}

fn want_rows(per_vip: impl Fn(usize) -> u64) -> Vec<(IpAddr, u64)> {
    (0..VIPS).map(|i| (vip(i), per_vip(i))).collect()
}

/// The pinned control entry, read without the layout check of `Maps` (the
/// older vip's datapath has the older layout version until the upgrade).
fn pinned_control(instance: &Instance) -> SparseControl {
    let map = pin::open(instance.pin_dir(), MAP_SPARSE_CONTROL).unwrap();
    let array: aya::maps::Array<_, SparseControl> = map.try_into().unwrap();
    array.get(&0, 0).unwrap()
}

fn pinned_key(instance: &Instance) -> u64 {
    pinned_control(instance).hash_key
}

/// Slots learned since the pressure counters began, and slots in use, on CPU 0.
fn slots(stats: &Value) -> (u64, u64) {
    let pressure = &range(stats)["sparse"];
    (
        number(pressure, "slots_learned"),
        pressure["slots_per_cpu"][0].as_u64().unwrap(),
    )
}

/// The older vip's datapath for `config`, left pinned once it has counted
/// `per_vip(i)` frames to each VIP; the instance runs this vip from then on.
/// Returns the frames sent and the older vip's last stats.
fn older_datapath(
    lab: &Lab,
    instance: &Instance,
    config: &str,
    per_vip: impl Fn(usize) -> u64,
) -> (u64, Value) {
    instance.use_binary(&old_vip_bin());
    let old = Daemon::start_with(&lab.server, config, instance, &["--keep-datapath"]);
    let sent = send(lab, per_vip);
    let stats = old.stats_once_counted(sent);
    old.stop();
    instance.use_binary(&vip_bin());
    (sent, stats)
}

/// This vip started on the older vip's pinned datapath with `config`, which
/// it upgrades in place.
fn upgraded<'a>(lab: &'a Lab, instance: &'a Instance, config: &str) -> Daemon<'a> {
    let new = Daemon::start_with(&lab.server, config, instance, &["--keep-datapath"]);
    assert!(
        new.log().contains("in-place upgrades by another build: 1"),
        "{}",
        new.log()
    );
    new
}

/// This vip's upgrade of the older datapath, killed once every link runs the
/// new programs, before it pins the maps it created.
fn crash_with_new_programs_running(lab: &Lab, instance: &Instance) {
    let step = "upgrade-replaced";
    let wrapper = ["env".to_string(), format!("VIP_FAULT_AT={step}")];
    let Err(log) = Daemon::try_start(&lab.server, &config(), instance, &[], &wrapper) else {
        panic!("vip run did not stop at {step}")
    };
    assert!(log.contains(&format!("VIP_FAULT_AT={step}")), "{log}");
}

#[test]
fn a_restarted_daemon_keeps_the_key_its_datapath_drew() {
    if !require_root("a_restarted_daemon_keeps_the_key_its_datapath_drew") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("skey");
    let instance = Instance::new("skey");
    let first = Daemon::start_with(&lab.server, &config(), &instance, &["--keep-datapath"]);
    let key = pinned_key(&instance);
    assert_ne!(key, 0, "a new datapath draws a key");
    assert_eq!(
        pinned_control(&instance).hash_kind,
        SPARSE_HASH_MULTIPLY,
        "a new datapath's hash"
    );
    let mut sent = send(&lab, |i| 1 + i as u64);
    let stats = first.stats_once_counted(sent);
    assert_eq!(slots(&stats), (VIPS as u64, VIPS as u64));
    first.stop();

    let second = Daemon::start_with(&lab.server, &config(), &instance, &["--keep-datapath"]);
    assert!(
        second.log().contains("adopted the datapath pinned in"),
        "{}",
        second.log()
    );
    assert_eq!(pinned_key(&instance), key, "kept by the adoption");
    assert_eq!(pinned_control(&instance).hash_kind, SPARSE_HASH_MULTIPLY);
    sent += send(&lab, |_| 2);
    let stats = second.stats_once_counted(sent);
    assert_eq!(rows(&stats), want_rows(|i| 3 + i as u64));
    assert_eq!(
        slots(&stats),
        (VIPS as u64, VIPS as u64),
        "every VIP found its row where it was: none learned again"
    );
    assert!(stats["sparse_table"]["keyed"].as_bool().unwrap());
    second.stop();
    instance.vip_ok(&lab.server, &["down"]);
}

/// The range is a /112, which this vip makes dense on a new datapath: the
/// older vip made it sparse, and the upgrade keeps it so, rows and all.
#[test]
fn an_upgrade_keeps_the_key_and_every_sparse_count() {
    if !require_root("an_upgrade_keeps_the_key_and_every_sparse_count") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("supg");
    let instance = Instance::new("supg");
    let (mut sent, stats) = older_datapath(&lab, &instance, &config_with(BLOCK), |i| 1 + i as u64);
    assert_eq!(
        rows(&stats),
        want_rows(|i| 1 + i as u64),
        "the older vip's rows"
    );
    assert_eq!(slots(&stats), (VIPS as u64, VIPS as u64));
    let before = pinned_control(&instance);
    assert_eq!(
        before.hash_kind, SPARSE_HASH_MULTIPLY,
        "the older vip's hash (layouts 10 and 11 draw the multiply hash)"
    );

    let new = upgraded(&lab, &instance, &config_with(BLOCK));
    let after = pinned_control(&instance);
    assert_ne!(after.hash_key, 0, "the older vip's key, kept");
    assert_eq!(
        (after.hash_key, after.hash_kind),
        (before.hash_key, SPARSE_HASH_MULTIPLY),
        "the older vip's key and hash, kept"
    );
    let stats = new.stats_once_counted(sent);
    assert_eq!(
        rows(&stats),
        want_rows(|i| 1 + i as u64),
        "rows kept by the upgrade"
    );
    assert!(stats["sparse_table"]["keyed"].as_bool().unwrap());
    // Every VIP learns one slot in the split table, and holds it: a second
    // round finds it where it was learned (same key).
    for (per_vip, total) in [(3, 4), (1, 5)] {
        sent += send(&lab, |_| per_vip);
        let stats = new.stats_once_counted(sent);
        assert_eq!(rows(&stats), want_rows(|i| total + i as u64));
        assert_eq!(slots(&stats), (2 * VIPS as u64, VIPS as u64));
        assert_eq!(number(range(&stats), "packets"), sent);
    }
    new.stop();
    instance.vip_ok(&lab.server, &["down"]);
}

/// Declared IPv6 VIPs of a datapath the older vip set up get their entries
/// in the IPv6 block index at the upgrade (layout 16), and so does their
/// range by its /64 (layout 17), which says they all have one; their rows
/// keep every count, before and after it.
#[test]
fn an_upgrade_gives_declared_ipv6_vips_their_entries_and_keeps_their_counts() {
    if !require_root("an_upgrade_gives_declared_ipv6_vips_their_entries_and_keeps_their_counts") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("sdecl");
    let instance = Instance::new("sdecl");
    let declaring = format!("{}vips = [\"{}\", \"{}\"]\n", config(), vip(0), vip(1));
    let (mut sent, stats) = older_datapath(&lab, &instance, &declaring, |i| 1 + i as u64);
    assert_eq!(
        rows(&stats),
        want_rows(|i| 1 + i as u64),
        "the older vip's rows"
    );
    let new = upgraded(&lab, &instance, &declaring);
    let map = pin::open(instance.pin_dir(), MAP_V6_BLOCKS).unwrap();
    let blocks: aya::maps::Array<_, V6Block> = map.try_into().unwrap();
    let mut entries: Vec<IpAddr> = blocks
        .iter()
        .map(Result::unwrap)
        .filter(|block| block.state == V6_BLOCK_DECLARED)
        .map(|block| IpAddr::from(Ipv6Addr::from(block.prefix_be)))
        .collect();
    entries.sort_unstable();
    assert_eq!(entries, [vip(0), vip(1)]);
    let by_64: Vec<(Ipv6Addr, u16, u16)> = blocks
        .iter()
        .map(Result::unwrap)
        .filter(|block| block.state == V6_BLOCK_RANGE)
        .map(|block| {
            (
                Ipv6Addr::from(block.prefix_be),
                block.first_offset_host,
                block.range_flags(),
            )
        })
        .collect();
    assert_eq!(
        by_64,
        [(
            "2001:db8:1::".parse().unwrap(),
            64,
            V6_RANGE_DECLARED_COMPLETE
        )]
    );
    sent += send(&lab, |_| 2);
    let stats = new.stats_once_counted(sent);
    assert_eq!(rows(&stats), want_rows(|i| 3 + i as u64));
    let declared: Vec<IpAddr> = range(&stats)["vips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["declared"].as_bool() == Some(true))
        .map(|row| row["addr"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(declared, [vip(0), vip(1)]);
    new.stop();
    instance.vip_ok(&lab.server, &["down"]);
}

/// A dense range added inside the /112 that the upgrade kept sparse: its
/// VIPs already hold slots of the outer range, yet from the reload on the
/// block's direct entry counts them for the inner range, and the rest of the
/// block still goes to the sparse table. The outer range keeps their earlier
/// rows and counts only the VIPs outside the inner range.
#[test]
fn a_dense_range_inside_the_block_an_upgrade_kept_sparse_counts_its_own_vips() {
    if !require_root("a_dense_range_inside_the_block_an_upgrade_kept_sparse_counts_its_own_vips") {
        return;
    }
    // VIPs 0 to 15 (::100 to ::10f); 16 to 19 stay the outer range's.
    const INNER: &str = "2001:db8:1::100/124";
    const INNER_VIPS: usize = 16;
    fixture::pin_to_cpu0();
    let lab = Lab::new("snest");
    let instance = Instance::new("snest");
    let (mut sent, _) = older_datapath(&lab, &instance, &config_with(BLOCK), |i| 1 + i as u64);
    let new = upgraded(&lab, &instance, &config_with(BLOCK));
    new.rewrite_config(&format!(
        "{}[[range]]\nname = \"inner\"\ncidr = \"{INNER}\"\n",
        config_with(BLOCK)
    ));
    let line = new.reload();
    assert!(line.contains("] reloaded "), "{line}");
    sent += send(&lab, |_| 2);
    let stats = new.stats_once_counted(sent);
    assert_eq!(range(&stats)["name"], "v6");
    assert!(
        !range(&stats)["sparse"].is_null(),
        "the /112 is still sparse"
    );
    assert_eq!(
        rows(&stats),
        want_rows(|i| 1 + i as u64 + if i < INNER_VIPS { 0 } else { 2 }),
        "the outer range keeps the inner VIPs' earlier rows and counts the rest"
    );
    let inner = &stats["ranges"][1];
    assert_eq!(inner["name"], "inner");
    assert!(inner["sparse"].is_null(), "the inner range is dense");
    let want: Vec<(IpAddr, u64, u64)> = (0..INNER_VIPS).map(|i| (vip(i), 2, 0)).collect();
    assert_eq!(vip_verdicts(inner), want, "the inner range's own VIPs");
    new.stop();
    instance.vip_ok(&lab.server, &["down"]);
}

/// `kill -9` once every link runs the new programs, before the upgrade has
/// pinned the maps it created; frames then, with no daemon running; then a
/// start whose config gives the range a list that drops everything.
/// - What the new programs counted is kept, beside the older vip's rows: the
///   split table's halves hold counts only, so they are pinned as soon as they
///   exist, as the dense table is.
/// - The list holds from the first packet. The new programs stamped their
///   slots with the tag word of the interrupted upgrade; the next start must
///   move that word on, not draw a fresh map whose first word is the same, or
///   a slot would vouch for its VIP under no list and its packets pass. (The
///   tag map is pinned as soon as the upgrade creates it.)
#[test]
fn a_crash_during_the_upgrade_keeps_counts_and_no_slot_vouches_for_an_old_list() {
    if !require_root("a_crash_during_the_upgrade_keeps_counts_and_no_slot_vouches_for_an_old_list")
    {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("scrash");
    let instance = Instance::new("scrash");
    let (mut sent, _) = older_datapath(&lab, &instance, &config(), |i| 1 + i as u64);
    crash_with_new_programs_running(&lab, &instance);
    // Learned, then counted from slots that vouch, by the new programs.
    sent += send(&lab, |_| 2);

    let new = Daemon::start_with(
        &lab.server,
        &config_dropping_all(),
        &instance,
        &["--keep-datapath"],
    );
    assert!(new.log().contains("adopted the datapath"), "{}", new.log());
    sent += send(&lab, |_| 1);
    let stats = new.stats_once_counted(sent);
    let want: Vec<(IpAddr, u64, u64)> = (0..VIPS).map(|i| (vip(i), 3 + i as u64, 1)).collect();
    assert_eq!(
        verdicts(&stats),
        want,
        "accepted before the list (the older vip's, then the new programs'), dropped after"
    );
    new.stop();
    instance.vip_ok(&lab.server, &["down"]);
}

const METRICS_AT: &str = "127.0.0.1:9671";

/// `config()` with the exporter on, its one range (sparse on either vip)
/// named `name`.
fn exported(name: &str) -> String {
    config()
        .replace("listen = \"off\"", &format!("listen = \"{METRICS_AT}\""))
        .replace("name = \"v6\"", &format!("name = \"{name}\""))
}

/// `vip_sparse_slots_learned_total` of range `name`, scraped from the
/// daemon's exporter (`None`: no such series).
fn learned_in_metrics(lab: &Lab, name: &str) -> Option<u64> {
    let (status, body) = http::get(&lab.server, METRICS_AT.parse().unwrap(), "/metrics");
    assert_eq!(status, 200, "{body}");
    let series = format!("vip_sparse_slots_learned_total{{range=\"{name}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.parse().unwrap())
}

/// The older vip's per-range counts (its per-CPU maps, frozen by the
/// upgrade) are added by every read, the exporter's too, which reads them
/// once and keeps them: until their range id goes to another range, whose
/// counts start afresh.
#[test]
fn the_older_per_range_counts_are_added_until_their_id_goes_to_another_range() {
    if !require_root("the_older_per_range_counts_are_added_until_their_id_goes_to_another_range") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("sfrz");
    let instance = Instance::new("sfrz");
    let (mut sent, stats) = older_datapath(&lab, &instance, &exported("v6"), |_| 1);
    assert_eq!(slots(&stats).0, VIPS as u64, "learned under the older vip");
    let new = upgraded(&lab, &instance, &exported("v6"));
    let learned = VIPS as u64;
    assert_eq!(learned_in_metrics(&lab, "v6"), Some(learned), "frozen only");
    sent += send(&lab, |_| 1);
    let stats = new.stats_once_counted(sent);
    assert_eq!(
        slots(&stats).0,
        2 * learned,
        "frozen and new, by `vip stats`"
    );
    assert_eq!(
        learned_in_metrics(&lab, "v6"),
        Some(2 * learned),
        "frozen (kept since the first scrape) and new, by the exporter"
    );

    // Renamed: a new range (a new id and epoch); then back to the first
    // name: a new range again, which takes id 0, freed by the rename.
    for name in ["w6", "v6"] {
        new.rewrite_config(&exported(name));
        let line = new.reload();
        assert!(line.contains("] reloaded "), "{line}");
        assert_eq!(learned_in_metrics(&lab, name), Some(0), "{name}: afresh");
        let stats = new.stats_json();
        assert_eq!(range(&stats)["name"], name);
        assert_eq!(slots(&stats).0, 0, "{name}: afresh, by `vip stats`");
    }
    new.stop();
    instance.vip_ok(&lab.server, &["down"]);
}
