//! One host, vip in two network namespaces, both with the default directories:
//! the router role (`vip apply`) in the router's namespace and the real-server
//! role (`vip run`) in the server's. Each keeps its files and pins to itself:
//! the daemon never picks up, repairs or reverts the router's items, traffic to
//! the VIPs is counted, and both come down cleanly. A command pointed at the
//! other namespace's files is refused with one line and exit status 2.

use std::{
    net::IpAddr,
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

use vip_tests::{
    daemon::{config_file, vip_bin},
    netns::Netns,
    root::require_root,
    seed::{assert_same_dump, host_dump, tcp_connect, SeedLab, Services, SERVER_IF},
};

const ROUTER_CONFIG: &str = "[[route]]\ncidr = \"192.0.2.0/24\"\nvia = \"198.18.2.2\"\n";
const ROUTER_SYSCTLS: [&str; 2] = ["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"];
const SERVER_SYSCTLS: [&str; 3] = [
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
];

fn server_config() -> String {
    format!(
        "interfaces = [\"{SERVER_IF}\"]\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n"
    )
}

/// `vip ARGS` in `ns` with the default pin and run directories.
fn vip(ns: &Netns, args: &[&str]) -> Output {
    ns.command(vip_bin())
        .args(args)
        .env_remove("VIP_PIN_DIR")
        .env_remove("VIP_RUN_DIR")
        .output()
        .expect("running vip")
}

fn ok(ns: &Netns, args: &[&str]) -> String {
    let out = vip(ns, args);
    assert!(
        out.status.success(),
        "vip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The default run directory of a namespace, as vip picks it.
fn run_dir(ns: &Netns) -> String {
    let dir = ns.run_in(vip_userspace::netns::default_run_dir);
    let inode = ns.run_in(vip_userspace::netns::current).0;
    assert!(
        dir.ends_with(format!("netns-{inode}")),
        "{} is not this namespace's own",
        dir.display()
    );
    dir.display().to_string()
}

/// Stops the daemon if a test step panics before `vip down` did.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn router_and_real_server_roles_in_two_namespaces_keep_to_their_own() {
    if !require_root("router_and_real_server_roles_in_two_namespaces_keep_to_their_own") {
        return;
    }
    let lab = SeedLab::new("nsb");
    let router_before = host_dump(&lab.router, &ROUTER_SYSCTLS);
    let server_before = host_dump(&lab.server, &SERVER_SYSCTLS);
    let _services = Services::start(&lab.server);

    let router_config = config_file(ROUTER_CONFIG);
    let router_path = router_config.path().to_str().unwrap();
    ok(&lab.router, &["apply", "--config", router_path]);
    let server_config = config_file(&server_config());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut daemon = Running(
        lab.server
            .command(vip_bin())
            .env_remove("VIP_PIN_DIR")
            .env_remove("VIP_RUN_DIR")
            .args(["run", "--config", server_config.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("spawning vip run"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !vip(&lab.server, &["stats", "--json"]).status.success() {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!(
                "vip run exited with {status}:\n{}",
                std::fs::read_to_string(log.path()).unwrap()
            );
        }
        assert!(Instant::now() < deadline, "vip run not counting in 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    let vips: Vec<IpAddr> = ["192.0.2.1", "192.0.2.77"]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    for vip in &vips {
        tcp_connect(&lab.client, *vip, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("TCP to {vip} through the router: {e}"));
    }
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&lab.server, &["stats", "--json"])).unwrap();
    let counted: Vec<&str> = stats["ranges"][0]["vips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["addr"].as_str().unwrap())
        .collect();
    assert_eq!(counted, ["192.0.2.1", "192.0.2.77"], "{stats}");
    // Wait out a few drift checks: the router's items are none of the daemon's.
    std::thread::sleep(Duration::from_millis(2500));
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&lab.server, &["stats", "--json"])).unwrap();
    assert_eq!(stats["drift_repairs"], serde_json::json!({}), "{stats}");
    let server_routes = lab.server.ip_output(&["route", "show"]);
    assert!(
        !server_routes.contains("192.0.2.0/24 via"),
        "the router's route was installed on the server:\n{server_routes}"
    );
    assert_eq!(lab.server.read_sysctl("net.ipv4.ip_forward"), "0");

    // The router's state file, read from the server's namespace: refused.
    let router_run_dir = run_dir(&lab.router);
    let out = vip(&lab.server, &["--run-dir", &router_run_dir, "down"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("belongs to another network namespace"),
        "{stderr}"
    );
    assert!(
        lab.router
            .ip_output(&["route", "show"])
            .contains("192.0.2.0/24 via 198.18.2.2"),
        "the refused down changed the router"
    );

    // Both come down, each in its own namespace, leaving each host as it was.
    let down = ok(&lab.server, &["down"]);
    assert!(down.contains("stopping vip run"), "{down}");
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "vip run exited with {status}");
    ok(&lab.router, &["down"]);
    assert_same_dump(
        &server_before,
        &host_dump(&lab.server, &SERVER_SYSCTLS),
        "server",
    );
    assert_same_dump(
        &router_before,
        &host_dump(&lab.router, &ROUTER_SYSCTLS),
        "router",
    );
    for ns in [&lab.router, &lab.server] {
        let dir = run_dir(ns);
        assert!(
            !std::path::Path::new(&dir).join("state.json").exists(),
            "{dir}/state.json left behind"
        );
    }
    let _ = std::fs::remove_dir(run_dir(&lab.router));
    let _ = std::fs::remove_dir(run_dir(&lab.server));
}
