//! An interface deleted and created again under a running daemon (a driver
//! reload, a network manager): the kernel detached vip's link with the old
//! device, and the new one has a new ifindex and nothing attached. The daemon
//! attaches again within a drift tick, in native and in generic mode, counts
//! it as drift of kind `attachment`, and every frame after is counted and
//! judged. Before, the frames passed the new device uncounted.
//!
//! The test thread is pinned to CPU 0, and so the threads that send its frames.

use std::{net::IpAddr, time::Duration};

use serde_json::Value;
use vip_tests::{
    daemon::{config_file, number, Daemon, Instance},
    fixture,
    netns::{veth, Lab},
    packets::FrameSpec,
    root::require_root,
    tunnel::{encapsulate, Tunnel},
};

const VIPS: [&str; 2] = ["192.0.2.10", "192.0.2.11"];

fn config(mode: &str) -> String {
    format!(
        "interfaces = [\"{}\"]\nxdp_mode = \"{mode}\"\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\nallow = [\"udp/53\"]\n",
        Lab::SERVER_IF
    )
}

/// Three frames to each VIP on the allowed port, one to each on a denied
/// port; returns (accepted, dropped) sent.
fn send(lab: &Lab) -> (u64, u64) {
    let vips: Vec<IpAddr> = VIPS.iter().map(|v| v.parse().unwrap()).collect();
    (
        lab.send_udp(&vips, 53, |_| 3),
        lab.send_udp(&vips, 54, |_| 1),
    )
}

fn range_counts(stats: &Value) -> (u64, u64) {
    let range = &stats["ranges"][0];
    assert_eq!(range["name"], "web", "{stats:#}");
    (number(range, "packets"), number(range, "dropped_packets"))
}

fn attached_again_after_recreation(tag: &str, mode: &str) {
    fixture::pin_to_cpu0();
    let lab = Lab::new(tag);
    let instance = Instance::new(tag);
    let daemon = Daemon::start(&lab.server, &config(mode), &instance);
    let (accepted, dropped) = send(&lab);
    let stats = daemon.stats_once_counted(accepted + dropped);
    assert_eq!(range_counts(&stats), (6, 2), "{stats:#}");
    let before = lab.server.xdp_prog_id(Lab::SERVER_IF);
    assert!(before.is_some(), "attached");

    lab.recreate_link();
    daemon.wait_logged("was deleted and created again");
    let log = daemon.log();
    assert!(log.contains("attached again"), "{log}");
    assert_eq!(
        lab.server.xdp_prog_id(Lab::SERVER_IF),
        before,
        "the same program attached to the new device"
    );
    let (more_accepted, more_dropped) = send(&lab);
    let stats = daemon.stats_once_counted(accepted + dropped + more_accepted + more_dropped);
    assert_eq!(range_counts(&stats), (12, 4), "{stats:#}");
    assert_eq!(
        stats["drift_repairs"]["attachment"], 1,
        "counted as drift: {stats:#}"
    );
    let attachments = stats["attachments"].to_string();
    assert!(attachments.contains(mode), "{attachments}");

    daemon.stop();
    instance.assert_nothing_left(&lab.server, Lab::SERVER_IF);
}

/// The lab's link created again (after it was deleted): vip attaches to
/// it, its frames are counted and judged; the daemon stopped leaves nothing.
fn back_and_counted(lab: &Lab, instance: &Instance, daemon: Daemon<'_>) {
    lab.create_link();
    daemon.wait_logged("was deleted and created again");
    let (accepted, dropped) = send(lab);
    let stats = daemon.stats_once_counted(accepted + dropped);
    assert_eq!(range_counts(&stats), (6, 2), "{stats:#}");
    daemon.stop();
    instance.assert_nothing_left(&lab.server, Lab::SERVER_IF);
}

#[test]
fn a_recreated_interface_is_attached_again_in_native_mode() {
    if !require_root("a_recreated_interface_is_attached_again_in_native_mode") {
        return;
    }
    attached_again_after_recreation("recrn", "native");
}

#[test]
fn a_recreated_interface_is_attached_again_in_generic_mode() {
    if !require_root("a_recreated_interface_is_attached_again_in_generic_mode") {
        return;
    }
    attached_again_after_recreation("recrg", "generic");
}

#[test]
fn an_interface_that_is_gone_is_logged_once_and_attached_when_back() {
    if !require_root("an_interface_that_is_gone_is_logged_once_and_attached_when_back") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("recrgone");
    let instance = Instance::new("recrgone");
    let daemon = Daemon::start(&lab.server, &config("native"), &instance);
    lab.server.ip(&["link", "del", Lab::SERVER_IF]);
    daemon.wait_logged("is gone: vip attaches to it again when it is back");
    std::thread::sleep(Duration::from_secs(3));
    let log = daemon.log();
    assert_eq!(log.matches("is gone").count(), 1, "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    back_and_counted(&lab, &instance, daemon);
}

/// Created again as a device that refuses the configured mode (a bridge has
/// no native XDP): the failure is logged once, not at every drift tick, and
/// vip attaches once the device that comes back takes it.
#[test]
fn a_recreated_interface_that_refuses_the_mode_is_logged_once() {
    if !require_root("a_recreated_interface_that_refuses_the_mode_is_logged_once") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("recrref");
    let instance = Instance::new("recrref");
    let daemon = Daemon::start(&lab.server, &config("native"), &instance);
    lab.server.ip(&["link", "del", Lab::SERVER_IF]);
    lab.server
        .ip(&["link", "add", Lab::SERVER_IF, "type", "bridge"]);
    daemon.wait_logged("attaching again: ");
    std::thread::sleep(Duration::from_secs(3));
    let log = daemon.log();
    assert_eq!(log.matches("attaching again: ").count(), 1, "{log}");
    assert!(
        !lab.server.has_xdp(Lab::SERVER_IF),
        "attached to the bridge"
    );

    lab.server.ip(&["link", "del", Lab::SERVER_IF]);
    back_and_counted(&lab, &instance, daemon);
}

/// Created again at a higher ifindex, beyond the decapsulation map (sized
/// for the ifindexes at start): the map is made afresh, and IPIP to a VIP
/// is decapsulated and counted again. Before, it waited for a restart.
#[test]
fn a_recreated_interface_decapsulates_again() {
    if !require_root("a_recreated_interface_decapsulates_again") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("recrdec");
    let instance = Instance::new("recrdec");
    let config = config("native").replace("[metrics]", "decap = [\"ipip\"]\n[metrics]");
    let daemon = Daemon::start(&lab.server, &config, &instance);
    let vip: IpAddr = VIPS[0].parse().unwrap();
    let tunnelled = encapsulate(&FrameSpec::udp(vip, 53).frame_len(90).build(), Tunnel::Ipip);
    lab.client
        .send_frames(Lab::CLIENT_IF, vec![tunnelled.clone()]);
    let stats = daemon.stats_once_counted(1);
    assert_eq!(stats["global"]["decapsulated"]["ipip"], 1, "{stats:#}");

    lab.recreate_link();
    daemon.wait_logged("beyond the decapsulation map");
    daemon.wait_logged("attachments now: ");
    lab.client.send_frames(Lab::CLIENT_IF, vec![tunnelled; 2]);
    let stats = daemon.stats_once_counted(3);
    assert_eq!(stats["global"]["decapsulated"]["ipip"], 3, "{stats:#}");
    assert_eq!(range_counts(&stats), (3, 0), "{stats:#}");
    let log = daemon.log();
    assert!(!log.contains("takes effect when vip restarts"), "{log}");
    daemon.stop();
    instance.assert_nothing_left(&lab.server, Lab::SERVER_IF);
}

/// The lab's second link, for a reload to add.
const EXTRA_CLIENT_IF: &str = "vipc1";
const EXTRA_SERVER_IF: &str = "vips1";

/// The config of [`config`] on `interfaces`, with the range accepted through
/// an alias (so vip sets the interfaces' ARP sysctls) and `extra` ranges.
fn config_with_alias(interfaces: &[&str], extra: &[&str]) -> String {
    let quoted: Vec<String> = interfaces.iter().map(|i| format!("\"{i}\"")).collect();
    let mut text = config("native")
        .replace(
            &format!("[\"{}\"]", Lab::SERVER_IF),
            &format!("[{}]", quoted.join(", ")),
        )
        .replace(
            "allow = [\"udp/53\"]\n",
            "allow = [\"udp/53\"]\naccept = \"alias\"\n",
        );
    for (i, cidr) in extra.iter().enumerate() {
        text.push_str(&format!(
            "[[range]]\nname = \"extra{i}\"\ncidr = \"{cidr}\"\n"
        ));
    }
    text
}

fn arp_ignore(lab: &Lab) -> String {
    lab.server
        .read_sysctl(&format!("net.ipv4.conf.{}.arp_ignore", Lab::SERVER_IF))
}

/// While an interface is gone, its sysctls are gone with it: the drift
/// repair goes on with the rest and logs no error, a reload of a config
/// that names it (and adds another interface and a range) is applied
/// (before, it was refused as an unknown interface), the interface is
/// attached and its sysctls set again when it is back, and a stop while it
/// is gone reverts everything else (before, it stopped at the interface's
/// sysctl, the alias left in place).
#[test]
fn a_reload_and_a_stop_while_an_interface_is_gone() {
    if !require_root("a_reload_and_a_stop_while_an_interface_is_gone") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("recrrel");
    let instance = Instance::new("recrrel");
    let all_arp_ignore = lab.server.read_sysctl("net.ipv4.conf.all.arp_ignore");
    let first = Lab::SERVER_IF;
    let daemon = Daemon::start(&lab.server, &config_with_alias(&[first], &[]), &instance);
    assert_eq!(arp_ignore(&lab), "1");
    lab.server.ip(&["link", "del", Lab::SERVER_IF]);
    daemon.wait_logged("is gone: vip attaches to it again when it is back");

    // The alias removed from outside meanwhile: repaired all the same.
    lab.server.ip(&["addr", "del", "192.0.2.0/24", "dev", "lo"]);
    daemon.wait_logged("drift: ip addr add 192.0.2.0/24");
    veth(
        (&lab.client, EXTRA_CLIENT_IF, None),
        (&lab.server, EXTRA_SERVER_IF, None),
    );
    daemon.rewrite_config(&config_with_alias(
        &[first, EXTRA_SERVER_IF],
        &["198.51.100.0/24"],
    ));
    let line = daemon.reload();
    assert!(
        line.contains("reloaded") && line.contains("2 range(s)"),
        "{line}"
    );
    let log = daemon.log();
    assert!(!log.contains("ERROR"), "{log}");
    assert!(
        log.contains(&format!(
            "attachments now: {first} (native), {EXTRA_SERVER_IF} (native)"
        )),
        "{log}"
    );
    assert!(
        lab.server.has_xdp(EXTRA_SERVER_IF),
        "{EXTRA_SERVER_IF} attached"
    );
    let vip: IpAddr = VIPS[0].parse().unwrap();
    let frame = FrameSpec::udp(vip, 53).frame_len(90).build();
    lab.client.send_frames(EXTRA_CLIENT_IF, vec![frame; 4]);
    let stats = daemon.stats_once_counted(4);
    assert_eq!(range_counts(&stats), (4, 0), "{stats:#}");

    lab.create_link();
    daemon.wait_logged("was deleted and created again");
    daemon.wait_logged(&format!(
        "drift: sysctl -w net.ipv4.conf.{}.arp_ignore=1",
        Lab::SERVER_IF
    ));
    assert_eq!(arp_ignore(&lab), "1");
    let (accepted, dropped) = send(&lab);
    let extra: IpAddr = "198.51.100.9".parse().unwrap();
    let to_extra = lab.send_udp(&[extra], 80, |_| 2);
    let stats = daemon.stats_once_counted(4 + accepted + dropped + to_extra);
    assert_eq!(range_counts(&stats), (10, 2), "{stats:#}");
    assert_eq!(
        number(&stats["ranges"][1], "packets"),
        to_extra,
        "{stats:#}"
    );

    lab.server.ip(&["link", "del", Lab::SERVER_IF]);
    daemon.wait_logged("is gone: vip attaches to it again when it is back");
    let log = daemon.stop();
    assert!(!log.contains("ERROR"), "{log}");
    assert!(
        !lab.server
            .ip_output(&["addr", "show", "dev", "lo"])
            .contains("192.0.2.0/24"),
        "the alias is left"
    );
    assert_eq!(
        lab.server.read_sysctl("net.ipv4.conf.all.arp_ignore"),
        all_arp_ignore
    );
    assert!(!instance.pin_dir().exists(), "pins left");
    assert!(!instance.state_file().exists(), "the state file left");
}

/// A restart (the shipped unit's `--keep-datapath`) while an interface is
/// gone adopts the datapath and waits for the interface, as the daemon
/// before it did: before, the start was refused as an unknown interface
/// (a unit restarting in a loop, nothing to attach the interface again when
/// it came back). A start with no datapath to adopt still refuses a name
/// that is not there.
#[test]
fn a_restart_while_an_interface_is_gone_adopts_and_waits_for_it() {
    if !require_root("a_restart_while_an_interface_is_gone_adopts_and_waits_for_it") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("recrstart");
    let instance = Instance::new("recrstart");
    let keep = ["--keep-datapath"];
    let daemon = Daemon::start_with(&lab.server, &config("native"), &instance, &keep);
    let (accepted, dropped) = send(&lab);
    daemon.stats_once_counted(accepted + dropped);
    daemon.stop();

    lab.server.ip(&["link", "del", Lab::SERVER_IF]);
    let daemon = Daemon::start_with(&lab.server, &config("native"), &instance, &keep);
    daemon.wait_logged("is gone: vip attaches to it again when it is back");
    let fresh = Instance::new("recrstart");
    let file = config_file(&config("native"));
    let stderr = fresh.vip_refused(
        &lab.server,
        &["run", "--config", file.path().to_str().unwrap()],
    );
    assert!(
        stderr.contains(&format!("unknown interface \"{}\"", Lab::SERVER_IF)),
        "{stderr}"
    );

    lab.create_link();
    daemon.wait_logged("was deleted and created again");
    let (more_accepted, more_dropped) = send(&lab);
    let stats = daemon.stats_once_counted(accepted + dropped + more_accepted + more_dropped);
    assert_eq!(range_counts(&stats), (12, 4), "{stats:#}");
    let log = daemon.stop();
    assert!(!log.contains("ERROR"), "{log}");
    instance.vip_ok(&lab.server, &["down"]);
    instance.assert_nothing_left(&lab.server, Lab::SERVER_IF);
}

/// A sysctl that a reload first wants while its interface is gone (here the
/// ARP sysctls, switched on by the reload) is recorded as wanted and set
/// when the interface is back, and a stop gives the interface back the
/// value it had then. Before, it was not recorded: nothing set it until the
/// next reload.
#[test]
fn a_sysctl_first_wanted_while_its_interface_is_gone_is_set_when_it_is_back() {
    if !require_root("a_sysctl_first_wanted_while_its_interface_is_gone_is_set_when_it_is_back") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("recrwant");
    let instance = Instance::new("recrwant");
    let first = Lab::SERVER_IF;
    let wanted = config_with_alias(&[first], &[]);
    let without_arp = format!("arp_sysctls = false\n{wanted}");
    let daemon = Daemon::start(&lab.server, &without_arp, &instance);
    assert_eq!(arp_ignore(&lab), "0");
    let all_arp_ignore = lab.server.read_sysctl("net.ipv4.conf.all.arp_ignore");
    lab.server.ip(&["link", "del", first]);
    daemon.wait_logged("is gone: vip attaches to it again when it is back");

    daemon.rewrite_config(&wanted);
    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
    let key = format!("net.ipv4.conf.{first}.arp_ignore");
    daemon.wait_logged(&format!(
        "sysctl -w {key}=1: not on this host now (its interface is gone); set when the interface is back"
    ));
    assert_eq!(lab.server.read_sysctl("net.ipv4.conf.all.arp_ignore"), "1");

    lab.create_link();
    daemon.wait_logged("was deleted and created again");
    daemon.wait_logged(&format!(
        "applied: sysctl -w {key}=1 (its interface is back)"
    ));
    assert_eq!(arp_ignore(&lab), "1");
    // Each wanted item is applied, and logged, in turn.
    let announce = format!("net.ipv4.conf.{first}.arp_announce");
    daemon.wait_logged(&format!(
        "applied: sysctl -w {announce}=2 (its interface is back)"
    ));
    assert_eq!(lab.server.read_sysctl(&announce), "2");
    let (accepted, dropped) = send(&lab);
    let stats = daemon.stats_once_counted(accepted + dropped);
    assert_eq!(range_counts(&stats), (6, 2), "{stats:#}");
    assert!(
        stats["drift_repairs"].get("sysctl").is_none(),
        "set, not repaired: {stats:#}"
    );

    let log = daemon.stop();
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(arp_ignore(&lab), "0");
    assert_eq!(
        lab.server.read_sysctl("net.ipv4.conf.all.arp_ignore"),
        all_arp_ignore
    );
    instance.assert_nothing_left(&lab.server, first);
}
