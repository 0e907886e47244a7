//! A restart that adopts the pinned datapath with other `interfaces` or
//! another `xdp_mode` (the shipped unit stops with `--keep-datapath`), and a
//! reload with them: interfaces the config adds are attached, those it
//! drops detached, those in a mode it no longer allows attached again in its
//! mode, and the interfaces that stay keep their link, with the new program
//! in it, and every count. Every interface decapsulates IPIP, through the
//! decap map created afresh for each new set of interfaces. Before, such a
//! start was refused until `vip down`, a reload that added an interface with
//! decapsulation failed on the decap map's size, and later a reload left
//! the attachments to the next restart.
//!
//! The test thread is pinned to CPU 0, and so the threads that send its frames.

use std::net::IpAddr;

use serde_json::Value;
use vip_tests::{
    daemon::{number, Daemon, Instance},
    fixture, http,
    netns::{veth, Lab},
    packets::FrameSpec,
    root::require_root,
    tunnel::{encapsulate, Tunnel},
};

/// The lab's second link: `EXTRA_CLIENT_IF` in the client, `EXTRA_SERVER_IF`
/// in the server.
const EXTRA_CLIENT_IF: &str = "vipc1";
const EXTRA_SERVER_IF: &str = "vips1";
const VIP: &str = "192.0.2.10";
/// In the server's namespace.
const METRICS: &str = "127.0.0.1:9669";

fn config(interfaces: &[&str], xdp_mode: &str) -> String {
    let interfaces: Vec<String> = interfaces.iter().map(|i| format!("\"{i}\"")).collect();
    format!(
        "interfaces = [{}]\nxdp_mode = \"{xdp_mode}\"\ndecap = [\"ipip\"]\n\
         [metrics]\nlisten = \"{METRICS}\"\n\
         [[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\n",
        interfaces.join(", ")
    )
}

/// `n` frames to the VIP from the client end of the link to `server_if`.
fn send(lab: &Lab, server_if: &str, n: usize) -> u64 {
    send_frame(lab, server_if, frame(), n)
}

/// One frame to the VIP in an IPIP tunnel, likewise.
fn send_ipip(lab: &Lab, server_if: &str) -> u64 {
    send_frame(lab, server_if, encapsulate(&frame(), Tunnel::Ipip), 1)
}

fn frame() -> Vec<u8> {
    let vip: IpAddr = VIP.parse().unwrap();
    FrameSpec::udp(vip, 53).frame_len(90).build()
}

fn send_frame(lab: &Lab, server_if: &str, frame: Vec<u8>, n: usize) -> u64 {
    let client_if = if server_if == Lab::SERVER_IF {
        Lab::CLIENT_IF
    } else {
        EXTRA_CLIENT_IF
    };
    lab.client.send_frames(client_if, vec![frame; n]);
    n as u64
}

fn decapsulated(stats: &Value) -> u64 {
    stats["global"]["decapsulated"]["ipip"].as_u64().unwrap()
}

/// The attachments `vip stats` reports, as (interface, mode).
fn attachments(stats: &Value) -> Vec<(String, String)> {
    stats["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["interface"].as_str().unwrap().to_string(),
                a["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Panics unless /healthz lists `attached`, as (interface, mode).
fn assert_healthz(lab: &Lab, attached: &[(&str, &str)]) {
    let list: Vec<String> = attached
        .iter()
        .map(|(interface, mode)| format!("{interface} ({mode})"))
        .collect();
    let health = http::get(&lab.server, METRICS.parse().unwrap(), "/healthz");
    assert_eq!(
        health,
        (200, format!("ok: attached to {}\n", list.join(", ")))
    );
}

fn range_packets(stats: &Value) -> u64 {
    number(&stats["ranges"][0], "packets")
}

fn start<'a>(lab: &'a Lab, instance: &'a Instance, interfaces: &[&str], mode: &str) -> Daemon<'a> {
    Daemon::start_with(
        &lab.server,
        &config(interfaces, mode),
        instance,
        &["--keep-datapath"],
    )
}

/// The lab with its second link, and an instance; this thread and its
/// senders pinned to CPU 0.
fn two_link_lab(tag: &str) -> (Lab, Instance) {
    fixture::pin_to_cpu0();
    let lab = Lab::new(tag);
    veth(
        (&lab.client, EXTRA_CLIENT_IF, None),
        (&lab.server, EXTRA_SERVER_IF, None),
    );
    (lab, Instance::new(tag))
}

/// How a test moves the daemon to another config.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Move {
    /// Stop with `--keep-datapath`, start again with the new config.
    Restart,
    Reload,
}

/// The daemon on `interfaces` in `mode`, moved there `by`.
fn move_to<'a>(
    lab: &'a Lab,
    instance: &'a Instance,
    daemon: Daemon<'a>,
    interfaces: &[&str],
    mode: &str,
    by: Move,
) -> Daemon<'a> {
    match by {
        Move::Restart => {
            daemon.stop();
            start(lab, instance, interfaces, mode)
        }
        Move::Reload => {
            daemon.rewrite_config(&config(interfaces, mode));
            let line = daemon.reload();
            assert!(line.contains("reloaded"), "{line}");
            daemon
        }
    }
}

/// The daemon on the first link, moved `by` to both links, then to the
/// second alone in generic mode; every count and every attachment checked
/// after each move. Returns the daemon and the frames sent.
fn added_then_dropped<'a>(lab: &'a Lab, instance: &'a Instance, by: Move) -> (Daemon<'a>, u64) {
    let (first, second) = (Lab::SERVER_IF, EXTRA_SERVER_IF);
    let daemon = start(lab, instance, &[first], "native");
    let mut sent = send(lab, first, 3) + send_ipip(lab, first);
    let stats = daemon.stats_once_counted(sent);
    assert_eq!(decapsulated(&stats), 1, "{stats:#}");
    let first_program = lab.server.xdp_prog_id(first).expect("attached");
    assert!(!lab.server.has_xdp(second));
    assert_healthz(lab, &[(first, "native")]);

    // Added: the second interface, with decapsulation; the first keeps its
    // link, with the new program in it, and its counts.
    let daemon = move_to(lab, instance, daemon, &[first, second], "native", by);
    let program = lab.server.xdp_prog_id(first).expect("still attached");
    assert_ne!(program, first_program, "the new program, in place");
    assert_eq!(lab.server.xdp_prog_id(second), Some(program));
    sent += send(lab, first, 2) + send(lab, second, 4);
    sent += send_ipip(lab, first) + send_ipip(lab, second);
    let stats = daemon.stats_once_counted(sent);
    assert_eq!(range_packets(&stats), sent, "{stats:#}");
    assert_eq!(decapsulated(&stats), 3, "{stats:#}");
    assert_eq!(
        attachments(&stats),
        [
            (first.into(), "native".into()),
            (second.into(), "native".into())
        ]
    );
    assert_healthz(lab, &[(first, "native"), (second, "native")]);

    // Dropped: the first; the second attached again in generic mode.
    let daemon = move_to(lab, instance, daemon, &[second], "generic", by);
    assert!(!lab.server.has_xdp(first), "detached from {first}");
    let link = lab.server.ip_output(&["link", "show", "dev", second]);
    assert!(link.contains("xdpgeneric"), "{link}");
    sent += send(lab, second, 5) + send_ipip(lab, second);
    let stats = daemon.stats_once_counted(sent);
    assert_eq!(range_packets(&stats), sent, "{stats:#}");
    assert_eq!(decapsulated(&stats), 4, "{stats:#}");
    assert_eq!(attachments(&stats), [(second.into(), "generic".into())]);
    assert_healthz(lab, &[(second, "generic")]);
    (daemon, sent)
}

#[test]
fn a_restart_attaches_and_detaches_what_the_config_changes() {
    if !require_root("a_restart_attaches_and_detaches_what_the_config_changes") {
        return;
    }
    let (lab, instance) = two_link_lab("ifre");
    let (daemon, _) = added_then_dropped(&lab, &instance, Move::Restart);
    daemon.stop();
    instance.vip_ok(&lab.server, &["down"]);
    let second = EXTRA_SERVER_IF;
    assert!(!lab.server.has_xdp(second), "vip down detached {second}");
}

#[test]
fn a_reload_attaches_and_detaches_what_the_config_changes() {
    if !require_root("a_reload_attaches_and_detaches_what_the_config_changes") {
        return;
    }
    let (lab, instance) = two_link_lab("ifrl");
    let second = EXTRA_SERVER_IF;
    let (daemon, mut sent) = added_then_dropped(&lab, &instance, Move::Reload);

    // The same interfaces and mode again: nothing is attached anew.
    let program = lab.server.xdp_prog_id(second).expect("attached");
    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
    assert_eq!(lab.server.xdp_prog_id(second), Some(program));
    let log = daemon.log();
    assert_eq!(log.matches("attachments now: ").count(), 2, "{log}");
    assert!(!log.contains("take effect when vip restarts"), "{log}");

    // Into TC, which cannot decapsulate; under `--keep-datapath` only with
    // TCX (kernel 6.6 on), as at start.
    let tc = config(&[second], "tc").replace("decap = [\"ipip\"]\n", "");
    daemon.rewrite_config(&tc);
    let line = daemon.reload();
    if vip_userspace::host::kernel::has_tcx() {
        assert!(line.contains("reloaded"), "{line}");
        assert!(!lab.server.has_xdp(second), "XDP left on {second}");
    } else {
        assert!(
            line.contains("refused") && line.contains("needs TCX"),
            "{line}"
        );
    }
    sent += send(&lab, second, 2);
    let stats = daemon.stats_once_counted(sent);
    assert_eq!(range_packets(&stats), sent, "{stats:#}");
    let mode = if vip_userspace::host::kernel::has_tcx() {
        "tc"
    } else {
        "generic"
    };
    assert_eq!(attachments(&stats), [(second.into(), mode.into())]);

    let log = daemon.stop();
    assert!(!log.contains("drift"), "{log}");
    instance.vip_ok(&lab.server, &["down"]);
    instance.assert_nothing_left(&lab.server, Lab::SERVER_IF);
    assert!(!lab.server.has_xdp(second), "vip down detached {second}");
}

/// A reload that adds an interface and whose map writes fail (the
/// kernel refused one) leaves the datapath as it was attached, the move
/// pending; the next reload finishes it.
#[test]
fn a_reload_that_failed_while_attaching_is_finished_by_the_next() {
    if !require_root("a_reload_that_failed_while_attaching_is_finished_by_the_next") {
        return;
    }
    let (lab, instance) = two_link_lab("ifrlf");
    let (first, second) = (Lab::SERVER_IF, EXTRA_SERVER_IF);
    let wrapper = [
        "env".to_string(),
        "VIP_FAULT_FAIL=sync-indexes-written".to_string(),
    ];
    let daemon = Daemon::try_start(
        &lab.server,
        &config(&[first], "native"),
        &instance,
        &[],
        &wrapper,
    )
    .unwrap_or_else(|log| panic!("vip run did not get ready:\n{log}"));
    let program = lab.server.xdp_prog_id(first).expect("attached");

    daemon.rewrite_config(&config(&[first, second], "native"));
    let line = daemon.reload();
    assert!(line.contains("failed half-way"), "{line}");
    let pending = instance.run_dir().join("layout-pending.json");
    assert!(pending.exists(), "no pending layout after a failed move");
    assert_eq!(lab.server.xdp_prog_id(first), Some(program));
    assert!(!lab.server.has_xdp(second), "attached to {second}");
    let mut sent = send(&lab, first, 3);
    let stats = daemon.stats_once_counted(sent);
    assert_eq!(attachments(&stats), [(first.into(), "native".into())]);

    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
    assert!(
        !pending.exists(),
        "the finished move left its pending layout"
    );
    let program = lab.server.xdp_prog_id(first).expect("still attached");
    assert_eq!(lab.server.xdp_prog_id(second), Some(program));
    sent += send(&lab, first, 2) + send(&lab, second, 4) + send_ipip(&lab, second);
    let stats = daemon.stats_once_counted(sent);
    assert_eq!(range_packets(&stats), sent, "{stats:#}");
    assert_eq!(decapsulated(&stats), 1, "{stats:#}");
    assert_eq!(
        attachments(&stats),
        [
            (first.into(), "native".into()),
            (second.into(), "native".into())
        ]
    );
    daemon.stop();
    instance.assert_nothing_left(&lab.server, first);
    assert!(!lab.server.has_xdp(second), "the stop detached {second}");
}

#[test]
fn a_start_after_one_killed_before_it_recorded_a_new_interface_detaches_it() {
    if !require_root("a_start_after_one_killed_before_it_recorded_a_new_interface_detaches_it") {
        return;
    }
    let (lab, instance) = two_link_lab("ifkill");
    let (first, second) = (Lab::SERVER_IF, EXTRA_SERVER_IF);
    start(&lab, &instance, &[first], "native").stop();

    // Dies with the second interface attached and its link pinned, but not
    // yet in the attachments' record.
    let wrapper = [
        "env".to_string(),
        "VIP_FAULT_AT=upgrade-attached".to_string(),
    ];
    let Err(log) = Daemon::try_start(
        &lab.server,
        &config(&[first, second], "native"),
        &instance,
        &["--keep-datapath"],
        &wrapper,
    ) else {
        panic!("vip run did not die at upgrade-attached");
    };
    assert!(log.contains("VIP_FAULT_AT=upgrade-attached"), "{log}");
    assert!(lab.server.has_xdp(second), "attached before the kill");

    let daemon = start(&lab, &instance, &[first], "native");
    assert!(!lab.server.has_xdp(second), "detached from {second}");
    let sent = send(&lab, first, 2);
    let stats = daemon.stats_once_counted(sent);
    assert_eq!(attachments(&stats), [(first.into(), "native".into())]);
    daemon.stop();
    instance.vip_ok(&lab.server, &["down"]);
    assert!(!lab.server.has_xdp(first), "vip down detached {first}");
}

/// A start killed between detaching an interface's TC link and attaching it
/// again in the new mode leaves a recorded TC attachment without a pin.
/// With TCX that is a detached bpf_link, not a netlink filter that may still
/// count: the next start attaches afresh. Before, it was refused until `vip
/// down`. Kernels without TCX cannot keep a TC datapath (`--keep-datapath`
/// is refused), so there is nothing to test there.
#[test]
fn a_start_after_one_killed_while_leaving_tc_attaches_again() {
    if !require_root("a_start_after_one_killed_while_leaving_tc_attaches_again") {
        return;
    }
    if !vip_userspace::host::kernel::has_tcx() {
        return;
    }
    let (lab, instance) = two_link_lab("iftckill");
    let first = Lab::SERVER_IF;
    let tc = |mode: &str| config(&[first], mode).replace("decap = [\"ipip\"]\n", "");
    let daemon = Daemon::start_with(&lab.server, &tc("tc"), &instance, &["--keep-datapath"]);
    let mut sent = send(&lab, first, 3);
    daemon.stats_once_counted(sent);
    daemon.stop();

    let wrapper = [
        "env".to_string(),
        "VIP_FAULT_AT=upgrade-detached".to_string(),
    ];
    let Err(log) = Daemon::try_start(
        &lab.server,
        &tc("native"),
        &instance,
        &["--keep-datapath"],
        &wrapper,
    ) else {
        panic!("vip run did not die at upgrade-detached");
    };
    assert!(log.contains("VIP_FAULT_AT=upgrade-detached"), "{log}");
    assert!(!lab.server.has_xdp(first), "XDP attached before the kill");

    let daemon = Daemon::start_with(&lab.server, &tc("native"), &instance, &["--keep-datapath"]);
    assert!(
        daemon.log().contains(&format!(
            "{first}: recorded as attached but its link is not pinned"
        )),
        "{}",
        daemon.log()
    );
    sent += send(&lab, first, 2);
    let stats = daemon.stats_once_counted(sent);
    assert_eq!(range_packets(&stats), sent, "{stats:#}");
    assert_eq!(attachments(&stats), [(first.into(), "native".into())]);
    assert!(lab.server.has_xdp(first), "not attached in XDP");
    daemon.stop();
    instance.vip_ok(&lab.server, &["down"]);
    instance.assert_nothing_left(&lab.server, first);
}
