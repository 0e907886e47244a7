//! An interface whose name holds a dot, as VLAN sub-interfaces are named
//! (`eth0.100`): vip attaches, pins its link, sets its ARP sysctls, counts,
//! reloads, adopts the datapath across a restart and leaves nothing. Before,
//! the start failed (bpffs refuses a dot in a pin name) and the interface's
//! sysctls were looked for at `conf/eth0/100/`. The lab's server end is a
//! veth so named (this kernel may have no 8021q module).

use std::net::IpAddr;

use vip_tests::{
    daemon::{number, Daemon, Instance},
    netns::{veth, Netns},
    packets::FrameSpec,
    root::require_root,
};

const CLIENT_IF: &str = "vipc0";
const SERVER_IF: &str = "vips0.7";
const VIP: &str = "192.0.2.10";

fn config(extra: &str) -> String {
    format!(
        "interfaces = [\"{SERVER_IF}\"]\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n{extra}"
    )
}

fn send(client: &Netns, n: usize) -> u64 {
    let vip: IpAddr = VIP.parse().unwrap();
    let frame = FrameSpec::udp(vip, 53).frame_len(90).build();
    client.send_frames(CLIENT_IF, vec![frame; n]);
    n as u64
}

fn arp_ignore(server: &Netns) -> String {
    server.read_sysctl(&format!("net/ipv4/conf/{SERVER_IF}/arp_ignore"))
}

#[test]
fn an_interface_named_with_a_dot_is_served() {
    if !require_root("an_interface_named_with_a_dot_is_served") {
        return;
    }
    let client = Netns::new("dotc");
    let server = Netns::new("dots");
    veth((&client, CLIENT_IF, None), (&server, SERVER_IF, None));
    let instance = Instance::new("dotted");
    let keep = ["--keep-datapath"];
    let daemon = Daemon::start_with(&server, &config(""), &instance, &keep);
    assert!(server.has_xdp(SERVER_IF), "attached");
    assert_eq!(arp_ignore(&server), "1");
    assert!(
        instance.pin_dir().join("link-vips0:7").exists(),
        "the link pinned with the dot written as a colon"
    );
    let mut sent = send(&client, 3);
    daemon.stats_once_counted(sent);

    // A reload reads the pinned attachments back.
    daemon.rewrite_config(&config(
        "[[range]]\nname = \"more\"\ncidr = \"198.51.100.0/24\"\n",
    ));
    let line = daemon.reload();
    assert!(
        line.contains("reloaded") && line.contains("2 range(s)"),
        "{line}"
    );
    daemon.stop();

    let daemon = Daemon::start_with(&server, &config(""), &instance, &keep);
    assert!(
        daemon.log().contains("adopted the datapath"),
        "{}",
        daemon.log()
    );
    sent += send(&client, 2);
    let stats = daemon.stats_once_counted(sent);
    assert_eq!(number(&stats["ranges"][0], "packets"), sent, "{stats:#}");
    let attachments = stats["attachments"].to_string();
    assert!(attachments.contains(SERVER_IF), "{attachments}");
    daemon.stop();
    instance.vip_ok(&server, &["down"]);
    instance.assert_nothing_left(&server, SERVER_IF);
    assert_eq!(arp_ignore(&server), "0");
}
