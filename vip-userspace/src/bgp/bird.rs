//! The BIRD 2 backend: vip writes BIRD's whole config into its run directory
//! (static routes for what it announces, one BGP session per neighbor), starts
//! `bird` on it, and reconfigures it through `birdc configure`. BIRD outlives
//! vip on purpose: a killed or upgrading vip leaves the announcement as it was.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::{Announcement, Session, Speaker, SpeakerError};
use crate::config::Bgp;

/// RFC 8326's GRACEFUL_SHUTDOWN community: receivers lower the route's
/// preference, so traffic moves away before the route is withdrawn.
pub const GRACEFUL_SHUTDOWN: (u16, u16) = (65535, 0);
/// How long a starting BIRD may take to open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything needed to drive one BIRD: what `vip down` reads back from the
/// run directory when the daemon is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bird {
    pub bird: PathBuf,
    pub birdc: PathBuf,
    /// vip's BGP directory in its run directory: config, socket, pid and log.
    pub dir: PathBuf,
    pub router_id: std::net::Ipv4Addr,
    pub local_as: u32,
    pub neighbors: Vec<(std::net::IpAddr, u32, Option<std::net::IpAddr>)>,
    pub communities: Vec<(u16, u16)>,
}

impl Bird {
    /// The BIRD of `bgp`, its programs found on PATH (or in an sbin
    /// directory, where Debian puts `bird`) before anything changes.
    pub fn locate(bgp: &Bgp, run_dir: &Path) -> Result<Bird, SpeakerError> {
        Ok(Bird {
            bird: find(&bgp.bird)?,
            birdc: find(&bgp.birdc)?,
            dir: run_dir.join("bgp"),
            router_id: bgp.router_id,
            local_as: bgp.local_as,
            neighbors: bgp
                .neighbors
                .iter()
                .map(|n| (n.address, n.remote_as, n.local_address))
                .collect(),
            communities: bgp.communities.clone(),
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("bird.conf")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("bird.pid")
    }

    /// BIRD's config for `routes`.
    pub fn render(&self, routes: &[Announcement]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Written by vip; rewritten on every change of what it announces.\n\
             router id {};\n\
             log \"{}\" all;\n\
             protocol device {{}}",
            self.router_id,
            self.dir.join("bird.log").display()
        );
        for (family, v4) in [("ipv4", true), ("ipv6", false)] {
            let _ = writeln!(out, "protocol static vip_{family} {{\n  {family};");
            for route in routes.iter().filter(|r| r.cidr.addr().is_ipv4() == v4) {
                let mut communities = self.communities.clone();
                if route.graceful_shutdown {
                    communities.push(GRACEFUL_SHUTDOWN);
                }
                let attrs: String = communities
                    .iter()
                    .map(|(asn, value)| format!(" bgp_community.add(({asn}, {value}));"))
                    .collect();
                let _ = writeln!(out, "  route {} blackhole {{{attrs} }};", route.cidr);
            }
            out.push_str("}\n");
        }
        for (index, (address, remote_as, local)) in self.neighbors.iter().enumerate() {
            let family = if address.is_ipv4() { "ipv4" } else { "ipv6" };
            let local = local.map(|l| format!("{l} ")).unwrap_or_default();
            // Quick (re)connects: a fleet's servers come and go.
            let _ = writeln!(
                out,
                "protocol bgp neighbor{index} {{\n  \
                 local {local}as {};\n  \
                 neighbor {address} as {remote_as};\n  \
                 connect delay time 1;\n  \
                 connect retry time 5;\n  \
                 error wait time 1, 30;\n  \
                 {family} {{ import none; export where proto = \"vip_{family}\"; }};\n}}",
                self.local_as
            );
        }
        out
    }

    fn birdc(&self, args: &[&str]) -> Result<Output, SpeakerError> {
        Command::new(&self.birdc)
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .map_err(|source| SpeakerError::Spawn {
                program: self.birdc.clone(),
                source,
            })
    }

    /// Whether a BIRD answers on the socket.
    pub fn running(&self) -> bool {
        self.socket().exists()
            && self
                .birdc(&["show", "status"])
                .is_ok_and(|out| out.status.success() && text(&out).contains("BIRD"))
    }

    fn start(&self) -> Result<(), SpeakerError> {
        let out = Command::new(&self.bird)
            .arg("-c")
            .arg(self.config_path())
            .arg("-s")
            .arg(self.socket())
            .arg("-P")
            .arg(self.pid_path())
            .output()
            .map_err(|source| SpeakerError::Spawn {
                program: self.bird.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(SpeakerError::Refused {
                what: "starting bird",
                output: text(&out),
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.running() {
            if Instant::now() > deadline {
                return Err(SpeakerError::Refused {
                    what: "starting bird",
                    output: format!("no answer on {} in 5 s", self.socket().display()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log::info!("started bird (control socket {})", self.socket().display());
        Ok(())
    }

    fn write_config(&self, routes: &[Announcement]) -> Result<(), SpeakerError> {
        let io = |source| SpeakerError::Io {
            path: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let temp = self.dir.join("bird.conf.new");
        std::fs::write(&temp, self.render(routes)).map_err(io)?;
        std::fs::rename(&temp, self.config_path()).map_err(io)
    }
}

impl Speaker for Bird {
    fn announce(&mut self, routes: &[Announcement]) -> Result<(), SpeakerError> {
        self.write_config(routes)?;
        if !self.running() {
            return self.start();
        }
        let out = self.birdc(&["configure"])?;
        let said = text(&out);
        if !out.status.success() || !said.contains("Reconfigur") {
            return Err(SpeakerError::Refused {
                what: "birdc configure",
                output: said,
            });
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), SpeakerError> {
        if !self.running() {
            return Ok(());
        }
        let pid = std::fs::read_to_string(self.pid_path())
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        self.birdc(&["down"])?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while pid.is_some_and(crate::host::state::alive) || self.socket().exists() {
            if Instant::now() > deadline {
                return Err(SpeakerError::Refused {
                    what: "birdc down",
                    output: "bird still running after 5 s".to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log::info!("stopped bird");
        Ok(())
    }

    fn sessions(&mut self) -> Result<Vec<Session>, SpeakerError> {
        let out = self.birdc(&["show", "protocols"])?;
        if !out.status.success() {
            return Err(SpeakerError::Refused {
                what: "birdc show protocols",
                output: text(&out),
            });
        }
        Ok(sessions(
            &String::from_utf8_lossy(&out.stdout),
            self.neighbors.iter().map(|n| n.0),
        ))
    }

    fn describe(&self) -> String {
        format!("bird (control socket {})", self.socket().display())
    }
}

/// Each neighbor's session from `birdc show protocols`: the line of protocol
/// `neighborN` (name, protocol, table, state, since, then the info).
fn sessions(table: &str, neighbors: impl Iterator<Item = std::net::IpAddr>) -> Vec<Session> {
    neighbors
        .enumerate()
        .map(|(index, neighbor)| {
            let name = format!("neighbor{index}");
            let info = table
                .lines()
                .find_map(|line| {
                    let mut words = line.split_whitespace();
                    (words.next() == Some(name.as_str()))
                        .then(|| words.skip(4).collect::<Vec<_>>().join(" "))
                })
                .unwrap_or_else(|| "not configured in bird".to_string());
            Session {
                neighbor,
                established: info.starts_with("Established"),
                info,
            }
        })
        .collect()
}

fn find(program: &Path) -> Result<PathBuf, SpeakerError> {
    let runnable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return if runnable(program) {
            Ok(program.to_path_buf())
        } else {
            Err(SpeakerError::Missing {
                program: program.to_path_buf(),
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| runnable(p))
        .ok_or_else(|| SpeakerError::Missing {
            program: program.to_path_buf(),
        })
}

fn text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        text.push(' ');
        text.push_str(err.trim());
    }
    text.replace('\n', "; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bird() -> Bird {
        Bird {
            bird: "bird".into(),
            birdc: "birdc".into(),
            dir: "/run/vip/bgp".into(),
            router_id: "198.18.1.2".parse().unwrap(),
            local_as: 65001,
            neighbors: vec![
                ("198.18.1.1".parse().unwrap(), 65000, None),
                (
                    "2001:db8:ffff::1".parse().unwrap(),
                    65000,
                    Some("2001:db8:ffff::2".parse().unwrap()),
                ),
            ],
            communities: vec![(65001, 100)],
        }
    }

    #[test]
    fn the_config_announces_each_route_in_its_family_with_its_communities() {
        let routes = [
            Announcement {
                cidr: "192.0.2.0/24".parse().unwrap(),
                graceful_shutdown: false,
            },
            Announcement {
                cidr: "2001:db8:1::/64".parse().unwrap(),
                graceful_shutdown: true,
            },
        ];
        let text = bird().render(&routes);
        assert!(text.contains("router id 198.18.1.2;"), "{text}");
        assert!(text.contains("protocol static vip_ipv4 {\n  ipv4;\n  route 192.0.2.0/24 blackhole { bgp_community.add((65001, 100)); };\n}"), "{text}");
        assert!(text.contains("protocol static vip_ipv6 {\n  ipv6;\n  route 2001:db8:1::/64 blackhole { bgp_community.add((65001, 100)); bgp_community.add((65535, 0)); };\n}"), "{text}");
        assert!(
            text.contains("local as 65001;\n  neighbor 198.18.1.1 as 65000;"),
            "{text}"
        );
        assert!(
            text.contains("ipv4 { import none; export where proto = \"vip_ipv4\"; };"),
            "{text}"
        );
        assert!(
            text.contains(
                "local 2001:db8:ffff::2 as 65001;\n  neighbor 2001:db8:ffff::1 as 65000;"
            ),
            "{text}"
        );
        assert!(
            text.contains("ipv6 { import none; export where proto = \"vip_ipv6\"; };"),
            "{text}"
        );
    }

    #[test]
    fn sessions_are_read_from_show_protocols() {
        let table = "BIRD 2.0.12 ready.\n\
            Name       Proto      Table      State  Since         Info\n\
            device1    Device     ---        up     05:02:35.561  \n\
            vip_ipv4   Static     master4    up     05:02:35.561  \n\
            neighbor0  BGP        ---        up     05:02:36.101  Established   \n\
            neighbor1  BGP        ---        down   05:02:35.562  Error: No listening socket\n";
        let found = sessions(table, bird().neighbors.iter().map(|n| n.0));
        assert_eq!(found.len(), 2);
        assert!(found[0].established);
        assert_eq!(found[0].info, "Established");
        assert_eq!(found[0].neighbor.to_string(), "198.18.1.1");
        assert!(!found[1].established);
        assert_eq!(found[1].info, "Error: No listening socket");
    }

    #[test]
    fn nothing_to_announce_leaves_empty_static_protocols() {
        let text = bird().render(&[]);
        assert!(
            text.contains("protocol static vip_ipv4 {\n  ipv4;\n}"),
            "{text}"
        );
        assert!(!text.contains("route "), "{text}");
    }
}
