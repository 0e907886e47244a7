//! The anycast lab: a client, a router running FRR (zebra and bgpd, ECMP with
//! an L4 hash), and two real servers, each to run `vip run` with `[bgp]` (vip
//! drives BIRD there, so the two ends are different BGP implementations).
//!
//! ```text
//! client 198.18.0.2 -- 198.18.0.1 router 198.18.1.1 -- 198.18.1.2 server 1
//!                                        198.18.2.1 -- 198.18.2.2 server 2
//! ```
//!
//! and the same in IPv6, on 2001:db8:ff00::/64, 2001:db8:ff01::/64 and
//! 2001:db8:ff02::/64, each host `::1` on the router's side, `::2` on the other.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::netns::{veth, Netns};

pub const ROUTER_AS: u32 = 65000;
pub const SERVER_AS: u32 = 65001;
pub const CLIENT_IF: &str = "c0";
pub const RANGE: &str = "192.0.2.0/24";
/// The IPv6 range, announced over the IPv6 sessions when a test asks for it.
pub const RANGE_V6: &str = "2001:db8:1::/64";
/// Server 1 steers TCP port 80 of its VIPs here: a steer target the tests
/// can take down.
pub const STEER_TO: &str = "127.0.0.1:8081";

/// One real server's side of the lab.
pub struct Server {
    pub ns: Netns,
    pub ifname: String,
    pub addr: String,
    pub router_addr: String,
    pub addr_v6: String,
    pub router_addr_v6: String,
}

pub struct AnycastLab {
    pub client: Netns,
    pub router: Netns,
    pub servers: [Server; 2],
    frr: Frr,
}

/// FRR's daemons in the router namespace; killed on drop.
struct Frr {
    dir: tempfile::TempDir,
}

impl Frr {
    fn pid_files(&self) -> [PathBuf; 2] {
        ["bgpd.pid", "zebra.pid"].map(|f| self.dir.path().join(f))
    }

    fn vty(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        for pid in self.pid_files() {
            if let Some(pid) = std::fs::read_to_string(&pid)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn frr_config() -> String {
    let mut config = format!(
        "frr defaults datacenter\n\
         hostname vip-lab-router\n\
         bgp community-list standard GSHUT permit graceful-shutdown\n\
         route-map VIP-IN permit 10\n match community GSHUT\n set local-preference 0\n\
         route-map VIP-IN permit 20\n\
         router bgp {ROUTER_AS}\n bgp router-id 198.18.0.1\n no bgp ebgp-requires-policy\n"
    );
    let v4 = ["198.18.1.2", "198.18.2.2"];
    let v6 = ["2001:db8:ff01::2", "2001:db8:ff02::2"];
    for server in v4.iter().chain(&v6) {
        config.push_str(&format!(" neighbor {server} remote-as {SERVER_AS}\n"));
    }
    for (family, servers, other) in [("ipv4", v4, v6), ("ipv6", v6, v4)] {
        config.push_str(&format!(
            " address-family {family} unicast\n  maximum-paths 8\n"
        ));
        for server in servers {
            config.push_str(&format!(
                "  neighbor {server} activate\n  neighbor {server} route-map VIP-IN in\n"
            ));
        }
        for server in other {
            config.push_str(&format!("  no neighbor {server} activate\n"));
        }
        config.push_str(" exit-address-family\n");
    }
    config
}

impl AnycastLab {
    pub fn new(tag: &str) -> AnycastLab {
        let make = |role: &str| {
            let ns = Netns::with_ipv6(&format!("{tag}{role}"));
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
            ns
        };
        let client = make("c");
        let router = make("r");
        veth((&client, CLIENT_IF, None), (&router, "rc", None));
        client.ip(&["addr", "add", "198.18.0.2/30", "dev", CLIENT_IF]);
        router.ip(&["addr", "add", "198.18.0.1/30", "dev", "rc"]);
        client.ip(&["route", "add", "default", "via", "198.18.0.1"]);
        client.ip(&[
            "addr",
            "add",
            "2001:db8:ff00::2/64",
            "dev",
            CLIENT_IF,
            "nodad",
        ]);
        router.ip(&["addr", "add", "2001:db8:ff00::1/64", "dev", "rc", "nodad"]);
        client.ip(&["-6", "route", "add", "default", "via", "2001:db8:ff00::1"]);
        router.sysctl("net.ipv4.ip_forward", "1");
        router.sysctl("net.ipv6.conf.all.forwarding", "1");
        // Flows, not packets, spread over the servers: the hash takes ports.
        router.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
        router.sysctl("net.ipv6.fib_multipath_hash_policy", "1");
        let servers = [1, 2].map(|n| {
            let ns = make(&format!("s{n}"));
            let ifname = format!("s{n}");
            let router_if = format!("r{n}");
            veth((&router, &router_if, None), (&ns, &ifname, None));
            let addr = format!("198.18.{n}.2");
            let router_addr = format!("198.18.{n}.1");
            router.ip(&[
                "addr",
                "add",
                &format!("{router_addr}/30"),
                "dev",
                &router_if,
            ]);
            ns.ip(&["addr", "add", &format!("{addr}/30"), "dev", &ifname]);
            ns.ip(&["route", "add", "default", "via", &router_addr]);
            let addr_v6 = format!("2001:db8:ff0{n}::2");
            let router_addr_v6 = format!("2001:db8:ff0{n}::1");
            let prefixed = |a: &str| format!("{a}/64");
            router.ip(&[
                "addr",
                "add",
                &prefixed(&router_addr_v6),
                "dev",
                &router_if,
                "nodad",
            ]);
            ns.ip(&["addr", "add", &prefixed(&addr_v6), "dev", &ifname, "nodad"]);
            ns.ip(&["-6", "route", "add", "default", "via", &router_addr_v6]);
            Server {
                ns,
                ifname,
                addr,
                router_addr,
                addr_v6,
                router_addr_v6,
            }
        });
        let frr = start_frr(&router);
        AnycastLab {
            client,
            router,
            servers,
            frr,
        }
    }

    /// `vtysh -c COMMAND` on the router.
    pub fn vtysh(&self, command: &str) -> String {
        let out = self
            .router
            .command("vtysh")
            .arg("--vty_socket")
            .arg(self.frr.vty())
            .arg("-c")
            .arg(command)
            .output()
            .expect("running vtysh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The next hops of the router's kernel route to the range (what ECMP
    /// spreads over), sorted.
    pub fn next_hops(&self) -> Vec<String> {
        self.next_hops_of(RANGE)
    }

    /// [`AnycastLab::next_hops`] of `cidr`, IPv4 or IPv6.
    pub fn next_hops_of(&self, cidr: &str) -> Vec<String> {
        let family = if cidr.contains(':') { "-6" } else { "-4" };
        let route = self.router.ip_output(&[family, "route", "show", cidr]);
        let mut hops: Vec<String> = route
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect();
        hops.sort();
        hops
    }

    /// A server's vip config: `range` announced with a TCP check on its own
    /// service and an exec check of `flag` (the test removes it to fail);
    /// server 1 also steers TCP port 80 to [`STEER_TO`].
    pub fn server_config(&self, index: usize, flag: &Path, drain_seconds: u32) -> String {
        let server = &self.servers[index];
        let check = health_script(flag);
        format!(
            "interfaces = [\"{ifname}\"]\n\
             xdp_mode = \"generic\"\n\
             [metrics]\nlisten = \"{addr}:9669\"\n\
             [bgp]\nlocal_as = {SERVER_AS}\nrouter_id = \"{addr}\"\ndrain_seconds = {drain_seconds}\n\
             [[bgp.neighbor]]\naddress = \"{router}\"\nas = {ROUTER_AS}\n\
             [[range]]\nname = \"web\"\ncidr = \"{RANGE}\"\naccept = \"alias\"\nannounce = true\n\
             health = [\n\
               {{ check = \"tcp:{addr}:{tcp}\", interval_ms = 200, timeout_ms = 100, rise = 2, fall = 2 }},\n\
               {{ check = \"exec:{script}\", interval_ms = 200, timeout_ms = 150, rise = 2, fall = 2 }},\n\
             ]\n{steer}",
            steer = if index == 0 {
                format!("steer = [{{ match = \"tcp/80\", to = \"{STEER_TO}\" }}]\n")
            } else {
                String::new()
            },
            ifname = server.ifname,
            addr = server.addr,
            router = server.router_addr,
            tcp = crate::seed::TCP_PORT,
            script = check.display(),
        )
    }
}

impl AnycastLab {
    /// [`AnycastLab::server_config`] plus [`RANGE_V6`], announced over an IPv6
    /// session with the router.
    pub fn server_config_v6(&self, index: usize, flag: &Path, drain_seconds: u32) -> String {
        let server = &self.servers[index];
        let mut config = self.server_config(index, flag, drain_seconds);
        let ranges = config.find("[[range]]").expect("a range");
        config.insert_str(
            ranges,
            &format!(
                "[[bgp.neighbor]]\naddress = \"{}\"\nas = {ROUTER_AS}\n",
                server.router_addr_v6
            ),
        );
        config.push_str(&format!(
            "[[range]]\nname = \"web6\"\ncidr = \"{RANGE_V6}\"\naccept = \"route\"\nannounce = true\n"
        ));
        config
    }
}

/// A script that passes while `flag` exists (kept beside it).
fn health_script(flag: &Path) -> PathBuf {
    let script = flag.with_extension("sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntest -e '{}'\n", flag.display()),
    )
    .expect("writing the health script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// zebra and bgpd in the router namespace, as the `frr` user (FRR refuses
/// root without the frrvty group), with their files in a directory of their own.
fn start_frr(router: &Netns) -> Frr {
    let dir = tempfile::tempdir().expect("FRR directory");
    let frr = Frr { dir };
    let path = frr.dir.path();
    std::fs::write(path.join("bgpd.conf"), frr_config()).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "frr:frr"])
        .arg(path)
        .status()
        .expect("chown");
    assert!(chown.success(), "chown frr: is FRR (Debian frr) installed?");
    let zserv = path.join("zserv.api");
    for (daemon, config) in [("zebra", None), ("bgpd", Some(path.join("bgpd.conf")))] {
        let mut command = router.command(format!("/usr/lib/frr/{daemon}"));
        command
            .arg("-d")
            .arg("-i")
            .arg(path.join(format!("{daemon}.pid")))
            .arg("-z")
            .arg(&zserv)
            .arg("--vty_socket")
            .arg(path)
            .args(["-P", "0", "-f"])
            .arg(config.unwrap_or_else(|| "/dev/null".into()));
        let status = command.status().expect("starting FRR (Debian package frr)");
        assert!(status.success(), "{daemon} did not start");
        if daemon == "zebra" {
            crate::wait::until("zebra's socket", Duration::from_secs(10), || zserv.exists());
        }
    }
    crate::wait::until("bgpd's pid file", Duration::from_secs(10), || {
        path.join("bgpd.pid").exists()
    });
    frr
}
