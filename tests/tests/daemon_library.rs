//! The daemon as a library (`vip_userspace::daemon`), driven in-process without
//! the `vip` binary or signals: start, count, reload, repair drift, shut down.

use std::{
    net::{IpAddr, UdpSocket},
    path::PathBuf,
};

use vip_tests::{
    daemon::Instance,
    netns::Netns,
    root::require_root,
    seed::{assert_same_dump, drift_local_route, host_dump, DirectLab, DIRECT_SERVER_IF},
};
use vip_userspace::{
    daemon::{Daemon, Options, Stop},
    stats::{self, Report},
};

fn config(ranges: &[(&str, &str)]) -> String {
    let mut text = format!("interfaces = [\"{DIRECT_SERVER_IF}\"]\n[metrics]\nlisten = \"off\"\n");
    for (name, cidr) in ranges {
        text.push_str(&format!(
            "[[range]]\nname = \"{name}\"\ncidr = \"{cidr}\"\naccept = \"route\"\n"
        ));
    }
    text
}

fn send(client: &Netns, vip: &str, count: usize) {
    let to = (vip.parse::<IpAddr>().unwrap(), 7000);
    client.run_in(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..count {
            socket.send_to(b"in-process", to).unwrap();
        }
    });
}

/// (range packets, VIP packets) of `range` and `vip`.
fn counted(report: &Report, range: &str, vip: &str) -> (u64, u64) {
    let range = report
        .ranges
        .iter()
        .find(|r| r.name == range)
        .unwrap_or_else(|| panic!("range {range} in the report"));
    let vip: IpAddr = vip.parse().unwrap();
    let vip_packets = range
        .vips
        .iter()
        .find(|v| v.addr == vip)
        .map_or(0, |v| v.packets);
    (range.packets, vip_packets)
}

#[test]
fn the_daemon_library_starts_counts_reloads_repairs_and_shuts_down() {
    if !require_root("the_daemon_library_starts_counts_reloads_repairs_and_shuts_down") {
        return;
    }
    let lab = DirectLab::new("lib");
    let instance = Instance::new("lib");
    let config_path: PathBuf = instance.run_dir().join("vip.toml");
    std::fs::write(&config_path, config(&[("web", "192.0.2.0/24")])).unwrap();
    let options = Options {
        config_path: config_path.clone(),
        pin_dir: instance.pin_dir().to_path_buf(),
        run_dir: instance.run_dir().to_path_buf(),
        keep_datapath: false,
    };
    let before = host_dump(&lab.server, &[]);

    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lab.server.enter();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let mut daemon = Daemon::start(options).await.expect("the daemon starts");
                    let attached: Vec<&str> = daemon
                        .datapath()
                        .attachments()
                        .iter()
                        .map(|a| a.interface.as_str())
                        .collect();
                    assert_eq!(attached, [DIRECT_SERVER_IF]);
                    assert!(instance
                        .pin_dir()
                        .join(vip_common::MAP_ATTACH_META)
                        .exists());
                    assert!(!lab
                        .server
                        .ip_output(&["route", "show", "table", "local", "192.0.2.0/24"])
                        .is_empty());

                    send(&lab.client, "192.0.2.7", 5);
                    let report = stats::read(daemon.datapath().maps()).unwrap();
                    assert_eq!(counted(&report, "web", "192.0.2.7"), (5, 5));

                    std::fs::write(
                        &config_path,
                        config(&[("web", "192.0.2.0/24"), ("more", "198.51.100.0/24")]),
                    )
                    .unwrap();
                    daemon.reload().await.expect("the reload is taken");
                    let names: Vec<&str> = daemon
                        .layout()
                        .ranges
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect();
                    assert_eq!(names, ["web", "more"]);
                    send(&lab.client, "198.51.100.9", 3);
                    let report = stats::read(daemon.datapath().maps()).unwrap();
                    assert_eq!(counted(&report, "web", "192.0.2.7"), (5, 5));
                    assert_eq!(counted(&report, "more", "198.51.100.9"), (3, 3));

                    drift_local_route(&lab.server, "198.51.100.0/24");
                    daemon.repair_drift().await.expect("drift repaired");
                    assert_eq!(
                        daemon.status().drift_repairs,
                        [("local_route".to_string(), 1)].into_iter().collect()
                    );
                    assert!(!lab
                        .server
                        .ip_output(&["route", "show", "table", "local", "198.51.100.0/24"])
                        .is_empty());

                    daemon
                        .shutdown(Stop::Revert)
                        .await
                        .expect("a clean shutdown");
                });
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });

    assert_same_dump(&before, &host_dump(&lab.server, &[]), "after shutdown");
    assert!(!lab.server.has_xdp(DIRECT_SERVER_IF), "still attached");
    assert!(!instance.pin_dir().exists(), "pins left behind");
    for file in ["state.json", "layout.json", "status.json"] {
        assert!(
            !instance.run_dir().join(file).exists(),
            "{file} left behind"
        );
    }
}
