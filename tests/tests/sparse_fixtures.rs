//! Fixtures for the sparse VIP table under BPF_PROG_TEST_RUN: overflow, reclaim
//! of idle slots (a removed range's among them), declared VIPs, a range that
//! does not learn, the keyed hash, and IPv6 packets to the keys of IPv4 VIPs. The table is per CPU, so each test pins itself to CPU 0, and uses the
//! smallest table, 64 slots (a page) per CPU.

use std::{
    net::{IpAddr, Ipv6Addr},
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use aya::maps::{lpm_trie::Key, LpmTrie};
use vip_common::{
    DeclaredVip, RangeValue, SparseCold, SparseHot, V6Block, Verdicts, VipAddr, MAP_DECLARED,
    MAP_RANGES, MAP_SPARSE_COLD, MAP_SPARSE_HOT, MAP_V6_BLOCKS, MAP_V6_RANGES, SPARSE_HASH_FMIX,
    SPARSE_HASH_MULTIPLY, SPARSE_HOT_POLICY_NONE, SPARSE_PROBES, SPARSE_TAG_RELOAD,
    SPARSE_TAG_VOUCHES, V6_BLOCK_DECLARED, V6_BLOCK_RANGE, V6_BLOCK_REMOVED,
    V6_RANGE_DECLARED_COMPLETE,
};
use vip_tests::{
    fixture::{self, Moved, Program, Verdict},
    packets::FrameSpec,
    root::require_root,
};
use vip_userspace::{
    datapath::cpu_table::SparseRow,
    stats::{GlobalReport, Report},
    Config, Layout, Loaded,
};

const CONFIG: &str = r#"
interfaces = ["lo"]
sparse_vip_capacity = 2

[[range]]
name = "v6"
cidr = "2001:db8:1::/64"
allow = ["udp/53"]

[[range]]
name = "declared"
cidr = "2001:db8:2::/64"
vips = ["2001:db8:2::a", "2001:db8:2::b"]

[[range]]
name = "quiet"
cidr = "2001:db8:3::/64"
vips = ["2001:db8:3::a"]
learn = false

[[range]]
name = "plain"
cidr = "2001:db8:4::/64"
"#;

const SLOTS: u32 = 64;

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

fn start(datapath: &Loaded, vip: &str) -> u32 {
    let vip = VipAddr::from_ip(v6(vip));
    fixture::sparse_control(datapath).slot_hash(&vip) & (SLOTS - 1)
}

/// `count` addresses of `prefix` (`2001:db8:1::`) other than `except`, whose
/// probe sequences start where `except`'s does, under this datapath's key.
fn same_start(datapath: &Loaded, prefix: &str, except: &str, count: usize) -> Vec<String> {
    let want = start(datapath, except);
    (1u32..)
        .map(|host| format!("{prefix}{host:x}"))
        .filter(|vip| vip != except && start(datapath, vip) == want)
        .take(count)
        .collect()
}

fn frame(vip: &str, port: u16) -> Vec<u8> {
    FrameSpec::udp(v6(vip), port).frame_len(80).build()
}

fn send(datapath: &mut Loaded, vip: &str) -> fixture::Deltas {
    fixture::run(datapath, Program::Xdp, &frame(vip, 53)).1
}

fn pressure(report: &Report, range: &str) -> vip_userspace::stats::SparsePressure {
    report.range(range).unwrap().sparse.clone().unwrap()
}

#[test]
fn overflow_is_counted_in_the_range() {
    if !require_root("overflow_is_counted_in_the_range") {
        return;
    }
    let datapath = fixture::load(CONFIG);
    assert_eq!(
        fixture::sparse_control(&datapath).hash_kind,
        SPARSE_HASH_MULTIPLY
    );
    overflow_is_counted(datapath);
}

/// The same under the fmix hash, which datapaths created by layout 9 and older
/// keep through upgrades: the VIPs userspace computes to share a probe start
/// share it in the datapath too.
#[test]
fn overflow_is_counted_under_the_older_hash() {
    if !require_root("overflow_is_counted_under_the_older_hash") {
        return;
    }
    // A key of its own each run, as a datapath draws one.
    let key = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let datapath = fixture::load_with_hash(CONFIG, SPARSE_HASH_FMIX, key);
    let control = fixture::sparse_control(&datapath);
    assert_eq!(
        (control.hash_kind, control.hash_key),
        (SPARSE_HASH_FMIX, key)
    );
    overflow_is_counted(datapath);
}

fn overflow_is_counted(mut datapath: Loaded) {
    fixture::pin_to_cpu0();
    // Nine VIPs whose probe sequences all start at one slot: eight fill it and
    // the seven after it, and the ninth finds every slot it may probe taken.
    let same = same_start(
        &datapath,
        "2001:db8:1::",
        "2001:db8:1::1",
        SPARSE_PROBES as usize,
    );
    let fits: Vec<&str> = std::iter::once("2001:db8:1::1")
        .chain(
            same[..SPARSE_PROBES as usize - 1]
                .iter()
                .map(String::as_str),
        )
        .collect();
    let overflow_vip = same[SPARSE_PROBES as usize - 1].as_str();
    for vip in &fits {
        let deltas = send(&mut datapath, vip);
        assert_eq!(
            deltas.vips.get(&v6(vip)),
            Some(&Moved::accepted(80)),
            "{vip} gets a slot"
        );
    }
    let (verdict, deltas) = fixture::run(&mut datapath, Program::Xdp, &frame(overflow_vip, 53));
    assert_eq!(verdict, Verdict::Pass);
    let overflow = Moved {
        overflow_packets: 1,
        ..Moved::accepted(80)
    };
    assert_eq!(
        deltas.ranges.get("v6"),
        Some(&overflow),
        "counted in the range, as overflow"
    );
    assert!(deltas.vips.is_empty(), "no VIP slot moved: {deltas:?}");
    let (verdict, deltas) = fixture::run(&mut datapath, Program::Tc, &frame(overflow_vip, 54));
    assert_eq!(verdict, Verdict::Drop, "policy still applies to overflow");
    let dropped = Moved {
        overflow_packets: 1,
        ..Moved::dropped(80)
    };
    assert_eq!(deltas.ranges.get("v6"), Some(&dropped));
    // A VIP that has a slot still counts once the table is full.
    let deltas = send(&mut datapath, fits[0]);
    assert_eq!(deltas.vips.get(&v6(fits[0])), Some(&Moved::accepted(80)));
    assert_eq!(deltas.ranges.get("v6"), Some(&Moved::accepted(80)));
}

/// A VIP idle for three sweeps gives its slot up to the next new VIP that
/// probes it; its counts move into the range's, whose totals do not change.
/// VIPs that saw a packet in the last two sweeps keep theirs.
#[test]
fn an_idle_vip_gives_its_slot_up_and_its_counts_stay_in_the_range() {
    let Some(mut datapath) =
        loaded("an_idle_vip_gives_its_slot_up_and_its_counts_stay_in_the_range")
    else {
        return;
    };
    let idle = "2001:db8:1::1";
    let same = same_start(&datapath, "2001:db8:1::", idle, SPARSE_PROBES as usize);
    let (busy, late) = same.split_at(SPARSE_PROBES as usize - 1);
    let late = late[0].as_str();
    for _ in 0..3 {
        send(&mut datapath, idle);
    }
    for vip in busy {
        send(&mut datapath, vip);
    }
    let before = fixture::snapshot(&datapath);
    let v6_before = before.range("v6").unwrap().clone();
    assert_eq!(v6_before.vip(v6(idle)).unwrap().packets, 3);
    for sweep in 1..=3 {
        let deltas = send(&mut datapath, late);
        assert_eq!(
            deltas.ranges.get("v6").map(|m| m.overflow_packets),
            Some(1),
            "before sweep {sweep}, every slot is busy"
        );
        datapath.sweep_sparse().unwrap();
        for vip in busy {
            send(&mut datapath, vip);
        }
    }
    let (verdict, deltas) = fixture::run(&mut datapath, Program::Xdp, &frame(late, 53));
    assert_eq!(verdict, Verdict::Pass);
    assert_eq!(
        deltas.ranges.get("v6"),
        Some(&Moved {
            reclaimed_packets: 3,
            ..Moved::accepted(80)
        }),
        "the range counts the packet once; the idle VIP's three packets move into its reclaimed count"
    );
    assert_eq!(deltas.vips.len(), 1, "{deltas:?}");
    assert_eq!(deltas.vips.get(&v6(late)), Some(&Moved::accepted(80)));
    let after = fixture::snapshot(&datapath);
    let v6_after = after.range("v6").unwrap();
    assert_eq!(v6_after.vip(v6(idle)), None, "the idle VIP's row is gone");
    for vip in busy {
        assert_eq!(
            v6_after.vip(v6(vip)).unwrap().packets,
            4,
            "{vip} keeps its row"
        );
    }
    let sent = 3 + busy.len() as u64 * 4 + 4;
    assert_eq!(
        v6_after.packets, sent,
        "range totals are exact across reclaim"
    );
    assert_eq!(v6_after.bytes, sent * 80);
    let pressure = pressure(&after, "v6");
    assert_eq!((pressure.slots_learned, pressure.slots_reclaimed), (9, 1));
    assert_eq!(pressure.reclaimed_packets, 3);
    assert_eq!(pressure.slots_per_cpu[0], 8);
    assert_eq!(after.sparse_table.generation, 3);
    assert!(after.sparse_table.keyed);
    // The new row counts on, through TC too.
    let (_, deltas) = fixture::run(&mut datapath, Program::Tc, &frame(late, 53));
    assert_eq!(deltas.vips.get(&v6(late)), Some(&Moved::accepted(80)));
}

/// `vip stats` tells idle slots from busy ones: after a scan the table stays
/// as full as it was, but each slot goes idle three sweeps after its VIP's
/// last packet, and a packet makes it busy again.
#[test]
fn idle_slots_are_told_from_busy_ones() {
    let Some(mut datapath) = loaded("idle_slots_are_told_from_busy_ones") else {
        return;
    };
    let scanned: Vec<String> = (1u32..=6)
        .map(|host| format!("2001:db8:4::{host:x}"))
        .collect();
    for vip in &scanned {
        send(&mut datapath, vip);
    }
    let table = |datapath: &Loaded| {
        let table = fixture::snapshot(datapath).sparse_table;
        assert!(
            table.used_per_cpu[1..]
                .iter()
                .chain(&table.idle_per_cpu[1..])
                .all(|&n| n == 0),
            "only CPU 0 counted: {table:?}"
        );
        table
    };
    for sweep in 0..3 {
        let now = table(&datapath);
        assert_eq!(
            (now.used_per_cpu[0], now.idle_per_cpu[0]),
            (6, 0),
            "after {sweep} sweeps"
        );
        assert_eq!(now.fullest_cpu_busy_ratio(), 6.0 / f64::from(SLOTS));
        datapath.sweep_sparse().unwrap();
    }
    let swept = table(&datapath);
    assert_eq!((swept.used_per_cpu[0], swept.idle_per_cpu[0]), (6, 6));
    assert_eq!(swept.fullest_cpu_ratio(), 6.0 / f64::from(SLOTS));
    assert_eq!(swept.fullest_cpu_busy_ratio(), 0.0);
    send(&mut datapath, &scanned[2]);
    let woken = table(&datapath);
    assert_eq!((woken.used_per_cpu[0], woken.idle_per_cpu[0]), (6, 5));
    assert_eq!(woken.fullest_cpu_busy_ratio(), 1.0 / f64::from(SLOTS));
}

/// Declared VIPs count in rows of their own from the start: addresses that
/// fill their probe sequence, and sweeps, change nothing for them.
#[test]
fn declared_vips_have_rows_whatever_fills_the_table() {
    let Some(mut datapath) = loaded("declared_vips_have_rows_whatever_fills_the_table") else {
        return;
    };
    let report = fixture::snapshot(&datapath);
    let rows: Vec<(IpAddr, u64, bool)> = report
        .range("declared")
        .unwrap()
        .vips
        .iter()
        .map(|v| (v.addr, v.packets, v.declared))
        .collect();
    assert_eq!(
        rows,
        [
            (v6("2001:db8:2::a"), 0, true),
            (v6("2001:db8:2::b"), 0, true)
        ],
        "listed before any traffic"
    );
    let declared = "2001:db8:2::a";
    // Scanned from ::1:1 up, so the scan never holds the other declared VIP
    // (::b shares ::a's probe start under one key in 64).
    let scan = same_start(
        &datapath,
        "2001:db8:2::1:",
        declared,
        SPARSE_PROBES as usize + 4,
    );
    for vip in &scan {
        send(&mut datapath, vip);
    }
    for _ in 0..4 {
        datapath.sweep_sparse().unwrap();
        for vip in &scan {
            send(&mut datapath, vip);
        }
        let deltas = send(&mut datapath, declared);
        assert_eq!(deltas.vips.get(&v6(declared)), Some(&Moved::accepted(80)));
        assert_eq!(deltas.ranges.get("declared"), Some(&Moved::accepted(80)));
    }
    let after = fixture::snapshot(&datapath);
    let range = after.range("declared").unwrap();
    let row = range.vip(v6(declared)).unwrap();
    assert_eq!((row.packets, row.bytes, row.declared), (4, 320, true));
    assert_eq!(range.vip(v6("2001:db8:2::b")).unwrap().packets, 0);
    let learned = range.vips.iter().filter(|v| !v.declared).count();
    assert_eq!(
        learned, SPARSE_PROBES as usize,
        "other addresses learn as usual"
    );
    assert_eq!(
        range.packets,
        5 * scan.len() as u64 + 4,
        "range totals are exact"
    );
    let pressure = pressure(&after, "declared");
    assert_eq!(pressure.declared_vips, 2);
    assert_eq!(pressure.slots_per_cpu[0], u64::from(SPARSE_PROBES));
}

#[test]
fn a_range_that_does_not_learn_counts_other_addresses_in_its_totals_only() {
    let Some(mut datapath) =
        loaded("a_range_that_does_not_learn_counts_other_addresses_in_its_totals_only")
    else {
        return;
    };
    let deltas = send(&mut datapath, "2001:db8:3::a");
    assert_eq!(
        deltas.vips.get(&v6("2001:db8:3::a")),
        Some(&Moved::accepted(80))
    );
    for host in 1..=20 {
        let deltas = send(&mut datapath, &format!("2001:db8:3::1:{host:x}"));
        assert!(deltas.vips.is_empty(), "{deltas:?}");
        assert_eq!(
            deltas.ranges.get("quiet"),
            Some(&Moved {
                unlearned_packets: 1,
                ..Moved::accepted(80)
            })
        );
    }
    let after = fixture::snapshot(&datapath);
    let pressure = pressure(&after, "quiet");
    assert_eq!(
        (pressure.slots_learned, pressure.unlearned_packets),
        (0, 20)
    );
    assert_eq!(after.range("quiet").unwrap().packets, 21);
    assert_eq!(after.sparse_table.used_per_cpu[0], 0, "no slot taken");
}

/// Each datapath draws its own key, so the same addresses land in different
/// slots, each within the probe sequence its own key gives.
#[test]
fn two_datapaths_place_the_same_addresses_differently() {
    if !require_root("two_datapaths_place_the_same_addresses_differently") {
        return;
    }
    fixture::pin_to_cpu0();
    let vips: Vec<String> = (1..=16)
        .map(|host| format!("2001:db8:1::{host:x}"))
        .collect();
    let placements: Vec<(u64, Vec<u32>)> = (0..2)
        .map(|_| {
            let mut datapath = fixture::load(CONFIG);
            let control = fixture::sparse_control(&datapath);
            assert_eq!(
                control.hash_kind, SPARSE_HASH_MULTIPLY,
                "a new datapath's hash"
            );
            let key = control.hash_key;
            for vip in &vips {
                send(&mut datapath, vip);
            }
            let table = &datapath.maps().tables().sparse;
            let slots = vips
                .iter()
                .map(|vip| {
                    let key_of = VipAddr::from_ip(v6(vip));
                    let index = (0..SLOTS)
                        .find(|&i| table.get(0, i).is_some_and(|row| row.vip == key_of))
                        .unwrap_or_else(|| panic!("{vip} has a slot"));
                    let offset = index.wrapping_sub(start(&datapath, vip)) & (SLOTS - 1);
                    assert!(
                        offset < SPARSE_PROBES,
                        "{vip} at {index}, within its probe sequence"
                    );
                    index
                })
                .collect();
            (key, slots)
        })
        .collect();
    let ((key_a, a), (key_b, b)) = (&placements[0], &placements[1]);
    assert_ne!(key_a, key_b);
    assert!(*key_a != 0 && *key_b != 0, "a new datapath's hash is keyed");
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    assert!(
        same <= 4,
        "{same} of 16 addresses in the same slot: {a:?} and {b:?}"
    );
}

/// Slots of a range a reload removed are never stamped again: they go idle
/// like any other, and are taken over then, their counts gone with their range.
#[test]
fn slots_of_a_removed_range_are_taken_over_once_idle() {
    let Some(mut datapath) = loaded("slots_of_a_removed_range_are_taken_over_once_idle") else {
        return;
    };
    let late = "2001:db8:2::99";
    let gone = same_start(&datapath, "2001:db8:1::", late, SPARSE_PROBES as usize);
    for vip in &gone {
        send(&mut datapath, vip);
    }
    let without_v6 = CONFIG.replace(
        "[[range]]\nname = \"v6\"\ncidr = \"2001:db8:1::/64\"\nallow = [\"udp/53\"]\n",
        "",
    );
    assert_ne!(without_v6, CONFIG);
    reload(&mut datapath, CONFIG, &without_v6);
    for sweep in 0..3 {
        let deltas = send(&mut datapath, late);
        assert_eq!(
            deltas.ranges.get("declared"),
            Some(&Moved {
                overflow_packets: 1,
                ..Moved::accepted(80)
            }),
            "after {sweep} sweeps, the removed range's slots are not idle yet"
        );
        datapath.sweep_sparse().unwrap();
    }
    let deltas = send(&mut datapath, late);
    assert_eq!(deltas.vips.get(&v6(late)), Some(&Moved::accepted(80)));
    assert_eq!(
        deltas.ranges.get("declared"),
        Some(&Moved::accepted(80)),
        "nothing of the removed range moves into this one"
    );
}

/// The slot where `vip` counts on CPU 0, found along its probe sequence,
/// and its index.
fn slot_of(datapath: &Loaded, vip: &str) -> (u32, SparseRow) {
    let key = VipAddr::from_ip(v6(vip));
    (0..SPARSE_PROBES)
        .filter_map(|i| {
            let index = (start(datapath, vip) + i) & (SLOTS - 1);
            Some((index, datapath.maps().tables().sparse.get(0, index)?))
        })
        .find(|(_, row)| row.vip == key)
        .unwrap_or_else(|| panic!("{vip} has no slot"))
}

/// Whether a row vouches for its VIP under the datapath's tag word now.
fn vouches(datapath: &Loaded, row: &SparseRow) -> bool {
    row.tag == fixture::sparse_tag(datapath) | SPARSE_TAG_VOUCHES
}

fn reload(datapath: &mut Loaded, from: &str, to: &str) {
    let parse = |text: &str| Config::parse(text, Path::new("fixture")).unwrap();
    let old = Layout::new(&parse(from));
    let new = old.update(&parse(to)).unwrap();
    datapath.update(&old, &new).unwrap();
}

/// A VIP of a sparse range without declared VIPs is judged and counted
/// through its slot alone once the slot vouches for it under the tag word in
/// force, with the range's allow list. A reload moves the word on, so the
/// VIP's next packet reads its range again: an allow list the reload gave the
/// range applies at once.
#[test]
fn a_reload_applies_a_new_allow_list_to_vips_counted_through_their_slot() {
    let Some(mut datapath) =
        loaded("a_reload_applies_a_new_allow_list_to_vips_counted_through_their_slot")
    else {
        return;
    };
    let first = fixture::sparse_tag(&datapath);
    assert_eq!(
        first, SPARSE_TAG_RELOAD,
        "a new datapath's, after its first ranges"
    );
    let (plain, listed) = ("2001:db8:4::1", "2001:db8:1::1");
    for _ in 0..3 {
        let (verdict, deltas) = fixture::run(&mut datapath, Program::Xdp, &frame(plain, 80));
        assert_eq!(verdict, Verdict::Pass);
        assert_eq!(deltas.vips.get(&v6(plain)), Some(&Moved::accepted(80)));
        assert_eq!(deltas.ranges.get("plain"), Some(&Moved::accepted(80)));
    }
    let (_, row) = slot_of(&datapath, plain);
    assert!(vouches(&datapath, &row), "{row:?}");
    assert_eq!(
        (row.policy_id, row.verdicts.accepted.packets),
        (SPARSE_HOT_POLICY_NONE, 3)
    );
    send(&mut datapath, listed);
    let (verdict, deltas) = fixture::run(&mut datapath, Program::Xdp, &frame(listed, 80));
    assert_eq!(verdict, Verdict::Drop, "judged from the slot by its list");
    assert_eq!(deltas.vips.get(&v6(listed)), Some(&Moved::dropped(80)));
    let (_, row) = slot_of(&datapath, listed);
    let v6_policy = range_value(&datapath, 0).policy_id;
    assert_ne!(v6_policy, vip_common::POLICY_NONE);
    assert!(
        vouches(&datapath, &row),
        "a listed range vouches too: {row:?}"
    );
    assert_eq!(u32::from(row.policy_id), v6_policy);
    assert_eq!(
        (row.verdicts.accepted.packets, row.verdicts.dropped.packets),
        (1, 1)
    );

    let with_list = CONFIG.replace(
        "name = \"plain\"\ncidr = \"2001:db8:4::/64\"\n",
        "name = \"plain\"\ncidr = \"2001:db8:4::/64\"\nallow = [\"udp/53\"]\n",
    );
    assert_ne!(with_list, CONFIG);
    reload(&mut datapath, CONFIG, &with_list);
    assert_eq!(
        fixture::sparse_tag(&datapath),
        first + SPARSE_TAG_RELOAD,
        "moved on by the reload"
    );
    let (_, row) = slot_of(&datapath, plain);
    assert!(!vouches(&datapath, &row), "no longer, under the new word");
    let (verdict, deltas) = fixture::run(&mut datapath, Program::Xdp, &frame(plain, 80));
    assert_eq!(verdict, Verdict::Drop, "port 80 is not on the new list");
    assert_eq!(deltas.vips.get(&v6(plain)), Some(&Moved::dropped(80)));
    let (verdict, deltas) = fixture::run(&mut datapath, Program::Tc, &frame(plain, 53));
    assert_eq!(verdict, Verdict::Pass);
    assert_eq!(deltas.vips.get(&v6(plain)), Some(&Moved::accepted(80)));
    let (_, row) = slot_of(&datapath, plain);
    let plain_policy = range_value(&datapath, 3).policy_id;
    assert_ne!(plain_policy, vip_common::POLICY_NONE);
    assert!(vouches(&datapath, &row), "vouches again, with the new list");
    assert_eq!(
        (
            u32::from(row.policy_id),
            row.verdicts.accepted.packets,
            row.verdicts.dropped.packets
        ),
        (plain_policy, 4, 1),
        "the same row"
    );
}

/// A VIP of a range with declared VIPs that is not one of them is judged
/// and counted through its slot alone once the slot vouches for it, as in a
/// range without declared VIPs; the declared VIPs keep their rows and never
/// take a slot. Declaring it in a reload replaces the range and moves the tag
/// word on, so its next packet counts in its declared row, not its old slot.
#[test]
fn an_undeclared_vip_of_a_declaring_range_is_counted_through_its_slot() {
    let Some(mut datapath) =
        loaded("an_undeclared_vip_of_a_declaring_range_is_counted_through_its_slot")
    else {
        return;
    };
    let (learned, declared) = ("2001:db8:2::c", "2001:db8:2::a");
    for _ in 0..3 {
        let deltas = send(&mut datapath, learned);
        assert_eq!(deltas.vips.get(&v6(learned)), Some(&Moved::accepted(80)));
        assert_eq!(deltas.ranges.get("declared"), Some(&Moved::accepted(80)));
        let deltas = send(&mut datapath, declared);
        assert_eq!(deltas.vips.get(&v6(declared)), Some(&Moved::accepted(80)));
        assert_eq!(deltas.ranges.get("declared"), Some(&Moved::accepted(80)));
    }
    let (_, row) = slot_of(&datapath, learned);
    assert!(vouches(&datapath, &row), "{row:?}");
    assert_eq!(
        (row.policy_id, row.verdicts.accepted.packets),
        (SPARSE_HOT_POLICY_NONE, 3)
    );
    let declared_key = VipAddr::from_ip(v6(declared));
    let slots = &datapath.maps().tables().sparse;
    assert!(
        (0..SLOTS).all(|i| slots.get(0, i).is_none_or(|row| row.vip != declared_key)),
        "a declared VIP takes no slot"
    );

    let declaring = CONFIG.replace(
        "vips = [\"2001:db8:2::a\", \"2001:db8:2::b\"]",
        "vips = [\"2001:db8:2::a\", \"2001:db8:2::b\", \"2001:db8:2::c\"]",
    );
    assert_ne!(declaring, CONFIG);
    reload(&mut datapath, CONFIG, &declaring);
    let (_, row) = slot_of(&datapath, learned);
    assert!(!vouches(&datapath, &row), "no longer, under the new word");
    let deltas = send(&mut datapath, learned);
    assert_eq!(deltas.vips.get(&v6(learned)), Some(&Moved::accepted(80)));
    let (_, after) = slot_of(&datapath, learned);
    assert_eq!(after, row, "the old slot is left as it was");
    let report = fixture::snapshot(&datapath);
    let range = report.range("declared").unwrap();
    let row = range.vip(v6(learned)).unwrap();
    assert_eq!(
        (row.packets, row.bytes, row.declared),
        (1, 80, true),
        "counted in its declared row of the new range"
    );
}

/// A declared IPv6 VIP is found through its entry in `VIP_V6_BLOCKS`
/// (layout 16), without the trie: with its range's trie entry deleted it
/// still counts in its declared row. An entry whose epoch is not its range's
/// is passed over, and the VIP is then looked for the slow way (here, with
/// the trie entry gone, in vain).
#[test]
fn a_declared_ipv6_vip_is_found_through_its_entry_in_the_block_index() {
    let Some(mut datapath) =
        loaded("a_declared_ipv6_vip_is_found_through_its_entry_in_the_block_index")
    else {
        return;
    };
    let layout = Layout::new(&Config::parse(CONFIG, Path::new("fixture")).unwrap());
    let entries = written_entries(&datapath, &layout, V6_BLOCK_DECLARED);
    let vips: std::collections::BTreeSet<Ipv6Addr> = entries
        .iter()
        .map(|(_, block)| Ipv6Addr::from(block.prefix_be))
        .collect();
    assert_eq!(
        vips,
        ["2001:db8:2::a", "2001:db8:2::b", "2001:db8:3::a"]
            .map(|a| a.parse::<Ipv6Addr>().unwrap())
            .into(),
        "every declared IPv6 VIP has an entry"
    );

    let declared = "2001:db8:2::a";
    // Nothing else finds the range: not the trie, not its entry by its /64.
    forget_range(&mut datapath, &layout, "2001:db8:2::");
    for _ in 0..2 {
        let deltas = send(&mut datapath, declared);
        assert_eq!(deltas.vips.get(&v6(declared)), Some(&Moved::accepted(80)));
        assert_eq!(deltas.ranges.get("declared"), Some(&Moved::accepted(80)));
    }
    let report = fixture::snapshot(&datapath);
    let row = report.range("declared").unwrap().vip(v6(declared)).unwrap();
    assert_eq!((row.packets, row.bytes, row.declared), (2, 160, true));

    let key = VipAddr::from_ip(v6(declared));
    let (index, block) = entries
        .iter()
        .copied()
        .find(|(_, block)| block.prefix_be == key.addr_be)
        .unwrap();
    let stale = V6Block::declared(
        block.prefix_be,
        block.declared_range_id(),
        block.declared_epoch() + 1,
        block.declared_slot(),
    );
    fixture::set_array_entry(&mut datapath, MAP_V6_BLOCKS, index, stale);
    let (verdict, deltas) = fixture::run(&mut datapath, Program::Xdp, &frame(declared, 80));
    assert_eq!(verdict, Verdict::Pass);
    assert!(
        deltas.vips.is_empty() && deltas.ranges.is_empty(),
        "the stale entry was passed over: {deltas:?}"
    );
    assert_eq!(deltas.global.non_vip_packets, 1);
}

/// The entries of `MAP_V6_BLOCKS` in `state` that `layout` computes, each
/// checked to be in the datapath's map as computed.
fn written_entries(datapath: &Loaded, layout: &Layout, state: u32) -> Vec<(u32, V6Block)> {
    let entries: Vec<(u32, V6Block)> = layout
        .v6_blocks()
        .into_iter()
        .filter(|(_, block)| block.state == state)
        .collect();
    for &(index, block) in &entries {
        let written: V6Block = fixture::array_entry(datapath, MAP_V6_BLOCKS, index);
        assert_eq!(written, block, "entry {index}");
    }
    entries
}

/// Makes the sparse /64 `network` unfindable but through its declared VIPs'
/// entries: its trie entry deleted, its entry by its /64 marked removed.
fn forget_range(datapath: &mut Loaded, layout: &Layout, network: &str) {
    let mut trie: LpmTrie<_, [u8; 16], RangeValue> =
        LpmTrie::try_from(datapath.maps_mut().map_mut(MAP_V6_RANGES).unwrap()).unwrap();
    let network = network.parse::<Ipv6Addr>().unwrap().octets();
    trie.remove(&Key::new(64, network)).unwrap();
    let (index, entry) = range_entry(layout, network);
    let removed = V6Block {
        state: V6_BLOCK_REMOVED,
        ..entry
    };
    fixture::set_array_entry(datapath, MAP_V6_BLOCKS, index, removed);
}

/// The entry of the sparse range of `network` by its /64, as the layout
/// places it.
fn range_entry(layout: &Layout, network: [u8; 16]) -> (u32, V6Block) {
    layout
        .v6_blocks()
        .into_iter()
        .find(|(_, block)| block.state == V6_BLOCK_RANGE && block.prefix_be == network)
        .expect("the range has an entry by its /64")
}

/// A sparse IPv6 range alone in its /64 is found through its entry in
/// `MAP_V6_BLOCKS` (layout 17), without the trie: a learned VIP and an
/// address a range that does not learn leaves out count as through the trie.
/// The entry's flag that says every declared VIP has an entry spares the
/// address's lookup in `MAP_DECLARED`: a false entry planted there is not
/// read while the flag is set, and is once it is cleared. A stale entry (its
/// range's epoch moved on) is passed over.
#[test]
fn a_sparse_range_is_found_through_its_entry_by_its_64() {
    let Some(mut datapath) = loaded("a_sparse_range_is_found_through_its_entry_by_its_64") else {
        return;
    };
    let layout = Layout::new(&Config::parse(CONFIG, Path::new("fixture")).unwrap());
    let entries = written_entries(&datapath, &layout, V6_BLOCK_RANGE);
    assert_eq!(entries.len(), 4, "v6, declared, quiet and plain");
    for (_, block) in &entries {
        assert_eq!(block.range_flags(), V6_RANGE_DECLARED_COMPLETE);
    }
    let mut trie: LpmTrie<_, [u8; 16], RangeValue> =
        LpmTrie::try_from(datapath.maps_mut().map_mut(MAP_V6_RANGES).unwrap()).unwrap();
    for network in ["2001:db8:3::", "2001:db8:4::"] {
        let network = network.parse::<Ipv6Addr>().unwrap().octets();
        trie.remove(&Key::new(64, network)).unwrap();
    }

    let learned = "2001:db8:4::1";
    for _ in 0..2 {
        let deltas = send(&mut datapath, learned);
        assert_eq!(deltas.vips.get(&v6(learned)), Some(&Moved::accepted(80)));
        assert_eq!(deltas.ranges.get("plain"), Some(&Moved::accepted(80)));
    }
    let unlearned = "2001:db8:3::77";
    let unlearned_moved = Moved {
        unlearned_packets: 1,
        ..Moved::accepted(80)
    };
    let deltas = send(&mut datapath, unlearned);
    assert!(deltas.vips.is_empty(), "{deltas:?}");
    assert_eq!(deltas.ranges.get("quiet"), Some(&unlearned_moved));

    // A false `MAP_DECLARED` entry: the unlearned address as if declared, in
    // the declared 2001:db8:3::a's slot.
    let declared = "2001:db8:3::a";
    let quiet = layout.ranges.iter().find(|r| r.name == "quiet").unwrap();
    let (_, declared_slot) = quiet
        .declared_slots()
        .find(|(addr, _)| *addr == v6(declared))
        .unwrap();
    let mut map: aya::maps::HashMap<_, VipAddr, DeclaredVip> =
        aya::maps::HashMap::try_from(datapath.maps_mut().map_mut(MAP_DECLARED).unwrap()).unwrap();
    let planted = DeclaredVip {
        dense_index: declared_slot,
        epoch: quiet.value.epoch,
    };
    map.insert(VipAddr::from_ip(v6(unlearned)), planted, 0)
        .unwrap();
    let deltas = send(&mut datapath, unlearned);
    assert!(deltas.vips.is_empty(), "not read: {deltas:?}");
    assert_eq!(deltas.ranges.get("quiet"), Some(&unlearned_moved));
    let network = "2001:db8:3::".parse::<Ipv6Addr>().unwrap().octets();
    let (index, entry) = range_entry(&layout, network);
    let incomplete = V6Block::range(network, 64, entry.range_id(), entry.range_epoch(), 0);
    fixture::set_array_entry(&mut datapath, MAP_V6_BLOCKS, index, incomplete);
    let deltas = send(&mut datapath, unlearned);
    assert_eq!(
        deltas.vips.get(&v6(declared)),
        Some(&Moved::accepted(80)),
        "read once the flag is cleared: {deltas:?}"
    );

    let network = "2001:db8:4::".parse::<Ipv6Addr>().unwrap().octets();
    let (index, entry) = range_entry(&layout, network);
    let stale = V6Block::range(network, 64, entry.range_id(), entry.range_epoch() + 1, 0);
    fixture::set_array_entry(&mut datapath, MAP_V6_BLOCKS, index, stale);
    let (verdict, deltas) = fixture::run(&mut datapath, Program::Xdp, &frame("2001:db8:4::2", 80));
    assert_eq!(verdict, Verdict::Pass);
    assert!(
        deltas.vips.is_empty() && deltas.ranges.is_empty(),
        "the stale entry was passed over: {deltas:?}"
    );
    assert_eq!(deltas.global.non_vip_packets, 1);
}

/// The datapath of `CONFIG`, loaded with this thread on CPU 0; `None` when
/// the test must skip for want of root (under CI it panics instead).
fn loaded(test: &str) -> Option<Loaded> {
    if !require_root(test) {
        return None;
    }
    fixture::pin_to_cpu0();
    Some(fixture::load(CONFIG))
}

fn hot_at(datapath: &Loaded, index: u32) -> SparseHot {
    fixture::array_entry(datapath, MAP_SPARSE_HOT, index)
}

/// Range `id` as the datapath has it.
fn range_value(datapath: &Loaded, id: u32) -> RangeValue {
    fixture::array_entry(datapath, MAP_RANGES, id)
}

/// A hot counter that would wrap carries, with the packet, into the slot's
/// cold half; the VIP's counts stay exact. The hot half is written as a VIP
/// with 255 packets (or 4 GiB of bytes) since its last carry leaves it.
#[test]
fn a_hot_counter_carries_into_the_cold_half_exactly() {
    let Some(mut datapath) = loaded("a_hot_counter_carries_into_the_cold_half_exactly") else {
        return;
    };
    let plain = "2001:db8:4::1";
    send(&mut datapath, plain);
    let (index, _) = slot_of(&datapath, plain);
    let cold = |datapath: &Loaded| -> SparseCold {
        fixture::array_entry(datapath, MAP_SPARSE_COLD, index)
    };
    let before = cold(&datapath);
    assert_eq!(before.sequence, 2, "taken once: odd, then even");
    assert_eq!(before.verdicts, Verdicts::default());

    // 255 packets in the hot half: the next one carries 256.
    let mut hot = hot_at(&datapath, index);
    (hot.accepted_packets, hot.accepted_bytes) = (255, 255 * 80);
    fixture::set_array_entry(&mut datapath, MAP_SPARSE_HOT, index, hot);
    let (verdict, deltas) = fixture::run(&mut datapath, Program::Xdp, &frame(plain, 80));
    assert_eq!(verdict, Verdict::Pass);
    assert_eq!(deltas.vips.get(&v6(plain)), Some(&Moved::accepted(80)));
    let after = cold(&datapath);
    assert_eq!(after.sequence, 4);
    assert_eq!(
        (
            after.verdicts.accepted.packets,
            after.verdicts.accepted.bytes
        ),
        (256, 256 * 80)
    );
    let hot = hot_at(&datapath, index);
    assert_eq!((hot.accepted_packets, hot.accepted_bytes), (0, 0));
    let (_, row) = slot_of(&datapath, plain);
    assert_eq!(row.verdicts.accepted.packets, 256);

    // Bytes within one frame of 4 GiB: the next frame carries them.
    let mut hot = hot_at(&datapath, index);
    (hot.accepted_packets, hot.accepted_bytes) = (3, u32::MAX - 40);
    fixture::set_array_entry(&mut datapath, MAP_SPARSE_HOT, index, hot);
    send(&mut datapath, plain);
    let after = cold(&datapath);
    assert_eq!(after.sequence, 6);
    assert_eq!(
        (
            after.verdicts.accepted.packets,
            after.verdicts.accepted.bytes
        ),
        (256 + 4, 256 * 80 + u64::from(u32::MAX - 40) + 80)
    );
    let (_, row) = slot_of(&datapath, plain);
    assert_eq!(
        row.verdicts.accepted,
        vip_common::Counter {
            packets: 260,
            bytes: 256 * 80 + u64::from(u32::MAX - 40) + 80
        }
    );
    // The dropped side carries on its own.
    let mut hot = hot_at(&datapath, index);
    hot.dropped_packets = 255;
    fixture::set_array_entry(&mut datapath, MAP_SPARSE_HOT, index, hot);
    let with_list = CONFIG.replace(
        "name = \"plain\"\ncidr = \"2001:db8:4::/64\"\n",
        "name = \"plain\"\ncidr = \"2001:db8:4::/64\"\nallow = [\"udp/53\"]\n",
    );
    reload(&mut datapath, CONFIG, &with_list);
    let (verdict, _) = fixture::run(&mut datapath, Program::Xdp, &frame(plain, 80));
    assert_eq!(verdict, Verdict::Drop);
    let after = cold(&datapath);
    assert_eq!(
        (
            after.sequence,
            after.verdicts.dropped.packets,
            after.verdicts.dropped.bytes
        ),
        (8, 256, 80)
    );
    assert_eq!(
        after.verdicts.accepted.packets, 260,
        "the accepted side as it was"
    );
}

/// Once a reload removes a range that only counts, the next packet to one of
/// its VIPs is to no VIP, though its slot was marked.
#[test]
fn a_vip_counted_through_its_slot_is_no_vip_once_its_range_is_removed() {
    let Some(mut datapath) =
        loaded("a_vip_counted_through_its_slot_is_no_vip_once_its_range_is_removed")
    else {
        return;
    };
    let plain = "2001:db8:4::1";
    send(&mut datapath, plain);
    send(&mut datapath, plain);
    let (_, row) = slot_of(&datapath, plain);
    assert!(vouches(&datapath, &row), "{row:?}");
    let without = CONFIG.replace(
        "[[range]]\nname = \"plain\"\ncidr = \"2001:db8:4::/64\"\n",
        "",
    );
    assert_ne!(without, CONFIG);
    reload(&mut datapath, CONFIG, &without);
    let (verdict, deltas) = fixture::run(&mut datapath, Program::Xdp, &frame(plain, 80));
    assert_eq!(verdict, Verdict::Pass);
    assert!(
        deltas.vips.is_empty() && deltas.ranges.is_empty(),
        "{deltas:?}"
    );
    assert_eq!(deltas.global.non_vip_packets, 1);
}

/// An IPv4 VIP of a range wider than /16 counts in a sparse slot keyed by its
/// address mapped into `::ffff:0:0/96`. An IPv6 packet to that mapped address
/// is to no VIP: it must not find the IPv4 VIP's slot, vouched or not. The
/// address rules keep IPv4 ranges wider than /16 out of the tests, so the
/// slot is written as such a VIP's first packet leaves it, for a live range
/// that only counts ("plain", id 3).
#[test]
fn an_ipv6_packet_to_an_ipv4_mapped_address_finds_no_ipv4_vip() {
    let Some(mut datapath) = loaded("an_ipv6_packet_to_an_ipv4_mapped_address_finds_no_ipv4_vip")
    else {
        return;
    };
    let mapped = "::ffff:192.0.2.1";
    let key = VipAddr::from_ip(IpAddr::V4("192.0.2.1".parse().unwrap()));
    assert_eq!(key, VipAddr::from_ip(v6(mapped)));
    let plain = range_value(&datapath, 3);
    assert_eq!(plain.policy_id, vip_common::POLICY_NONE);
    let index = start(&datapath, mapped);
    for vouched in [true, false] {
        let cold = SparseCold {
            range_id: plain.range_id,
            epoch: plain.epoch,
            ..SparseCold::default()
        };
        let hot = SparseHot {
            vip: key,
            tag: fixture::sparse_tag(&datapath) | (u32::from(vouched) * SPARSE_TAG_VOUCHES),
            policy_id: SPARSE_HOT_POLICY_NONE,
            ..SparseHot::default()
        };
        fixture::set_array_entry(&mut datapath, MAP_SPARSE_COLD, index, cold);
        fixture::set_array_entry(&mut datapath, MAP_SPARSE_HOT, index, hot);
        let (verdict, deltas) = fixture::run(&mut datapath, Program::Xdp, &frame(mapped, 53));
        assert_eq!(verdict, Verdict::Pass, "vouched: {vouched}");
        assert_eq!(
            deltas,
            fixture::Deltas {
                global: GlobalReport {
                    packets: 1,
                    non_vip_packets: 1,
                    ..GlobalReport::default()
                },
                ..fixture::Deltas::default()
            },
            "vouched: {vouched}"
        );
        assert_eq!(
            fixture::snapshot(&datapath).range("plain").unwrap().packets,
            0
        );
    }
}
