//! A reload that gives a sparse range another allow list retires the old one
//! (its port bitmaps zeroed: a list that allows nothing). A sparse slot that
//! vouched for its VIP under the old list judges its packets from the slot
//! alone, by the old list's id; so no slot may still vouch once the old list
//! is retired. The daemon is killed (`VIP_FAULT_AT`) right after the
//! retirement, which freezes the datapath at that point of the reload.
//!
//! The test thread is pinned to CPU 0, and so the threads that send its frames
//! (they inherit the mask): every frame is counted in CPU 0's table.

use std::net::IpAddr;

use vip_tests::{
    daemon::{vip_verdicts, Daemon, Instance},
    fixture,
    netns::Lab,
    root::require_root,
};

const VIPS: usize = 8;
const STEP: &str = "reload-list-retired";

fn config(allow: &str) -> String {
    format!(
        "interfaces = [\"{}\"]\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"v6\"\ncidr = \"2001:db8:1::/64\"\nallow = [{allow}]\n",
        Lab::SERVER_IF
    )
}

fn vip(i: usize) -> IpAddr {
    format!("2001:db8:1::{:x}", 0x200 + i).parse().unwrap()
}

/// One UDP frame to `port` of every VIP; returns how many.
fn send(lab: &Lab, port: u16) -> u64 {
    let vips: Vec<IpAddr> = (0..VIPS).map(vip).collect();
    lab.send_udp(&vips, port, |_| 1)
}

#[test]
fn no_slot_vouches_under_an_allow_list_a_reload_retired() {
    if !require_root("no_slot_vouches_under_an_allow_list_a_reload_retired") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("rvouch");
    let instance = Instance::new("rvouch");
    let wrapper = ["env".to_string(), format!("VIP_FAULT_AT={STEP}")];
    let daemon = Daemon::try_start(&lab.server, &config("\"udp/53\""), &instance, &[], &wrapper)
        .unwrap_or_else(|log| panic!("vip run did not get ready:\n{log}"));
    // Each VIP learns its slot, then is counted from it, vouching.
    let mut sent = send(&lab, 53) + send(&lab, 53);
    daemon.stats_once_counted(sent);

    daemon.rewrite_config(&config("\"udp/53\", \"udp/54\""));
    instance.reload_killing_the_daemon(&lab.server);
    let log = daemon.wait_exit();
    assert!(log.contains(&format!("VIP_FAULT_AT={STEP}")), "{log}");

    // Port 53 is in both lists.
    sent += send(&lab, 53);
    let stats = instance.stats_once_counted(&lab.server, sent);
    let want: Vec<(IpAddr, u64, u64)> = (0..VIPS).map(|i| (vip(i), 3, 0)).collect();
    assert_eq!(
        vip_verdicts(&stats["ranges"][0]),
        want,
        "port 53, allowed by both lists, never dropped"
    );
    instance.vip_ok(&lab.server, &["down"]);
}
