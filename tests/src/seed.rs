//! The seed's topology in namespaces: client -- router -- real server, two veth
//! links, IPv4 and IPv6; echo services on the server; client traffic; host dumps.

use std::{
    io::ErrorKind,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::netns::{veth, Netns};

pub const CLIENT_IF: &str = "c0";
pub const ROUTER_CLIENT_IF: &str = "rc";
pub const ROUTER_SERVER_IF: &str = "rs";
pub const SERVER_IF: &str = "s0";
pub const ROUTER_SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
pub const ROUTER_ON_SERVER_LINK_V4: [u8; 4] = [198, 18, 2, 1];
pub const SERVER_V4: &str = "198.18.2.2";
pub const SERVER_V6: &str = "2001:db8:ff02::2";
pub const TCP_PORT: u16 = 8080;
pub const UDP_PORT: u16 = 7777;

pub struct SeedLab {
    pub client: Netns,
    pub router: Netns,
    pub server: Netns,
}

impl SeedLab {
    pub fn new(tag: &str) -> SeedLab {
        let [client, router, server] = ["c", "r", "s"].map(|role| {
            let ns = Netns::with_ipv6(&format!("{tag}{role}"));
            // No duplicate address detection: a tentative link-local address
            // delays neighbour discovery and shows up in the host dumps.
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
            ns
        });
        veth(
            (&client, CLIENT_IF, None),
            (&router, ROUTER_CLIENT_IF, None),
        );
        veth(
            (&router, ROUTER_SERVER_IF, Some(ROUTER_SERVER_MAC)),
            (&server, SERVER_IF, Some(SERVER_MAC)),
        );
        let setup = [
            (&client, CLIENT_IF, "198.18.1.2/24", "2001:db8:ff01::2/64"),
            (
                &router,
                ROUTER_CLIENT_IF,
                "198.18.1.1/24",
                "2001:db8:ff01::1/64",
            ),
            (
                &router,
                ROUTER_SERVER_IF,
                "198.18.2.1/24",
                "2001:db8:ff02::1/64",
            ),
            (&server, SERVER_IF, "198.18.2.2/24", "2001:db8:ff02::2/64"),
        ];
        for (ns, ifname, v4, v6) in setup {
            ns.ip(&["addr", "add", v4, "dev", ifname]);
            ns.ip(&["addr", "add", v6, "dev", ifname, "nodad"]);
        }
        client.ip(&["route", "add", "default", "via", "198.18.1.1"]);
        client.ip(&["-6", "route", "add", "default", "via", "2001:db8:ff01::1"]);
        server.ip(&["route", "add", "default", "via", "198.18.2.1"]);
        server.ip(&["-6", "route", "add", "default", "via", "2001:db8:ff02::1"]);
        let lab = SeedLab {
            client,
            router,
            server,
        };
        lab.settle();
        lab
    }

    /// Waits until every link has carrier and its IPv6 link-local address: both
    /// come asynchronously, and a host dump taken before would differ later.
    fn settle(&self) {
        let deadline = std::time::Instant::now() + crate::wait::scaled(Duration::from_secs(10));
        for (ns, links) in [(&self.client, 1), (&self.router, 2), (&self.server, 1)] {
            loop {
                let up = ns.ip_output(&["-br", "link", "show", "up"]);
                let settled = !up.contains("NO-CARRIER")
                    && up.lines().filter(|l| l.contains("LOWER_UP")).count() == links + 1
                    && ns
                        .ip_output(&["-6", "-br", "addr", "show", "scope", "link"])
                        .lines()
                        .count()
                        == links;
                if settled {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "lab links did not come up"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl SeedLab {
    /// Routes and neighbours of all three hosts, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (name, ns) in [
            ("client", &self.client),
            ("router", &self.router),
            ("server", &self.server),
        ] {
            for args in [
                &["route"][..],
                &["-6", "route"],
                &["neigh"],
                &["-6", "neigh"],
                &["-6", "route", "show", "table", "local"],
            ] {
                out.push_str(&format!(
                    "{name}$ ip {}\n{}",
                    args.join(" "),
                    ns.ip_output(args)
                ));
            }
        }
        out
    }
}

/// A client and a real server on one veth link (198.18.0.1 and .2), the
/// client routing the three VIP /24s to the server: for tests that need no router.
pub struct DirectLab {
    pub client: Netns,
    pub server: Netns,
}

pub const DIRECT_SERVER_IF: &str = "ps0";

impl DirectLab {
    pub fn new(tag: &str) -> DirectLab {
        let client = Netns::new(&format!("{tag}c"));
        let server = Netns::new(&format!("{tag}s"));
        veth((&client, "pc0", None), (&server, DIRECT_SERVER_IF, None));
        client.ip(&["addr", "add", "198.18.0.1/24", "dev", "pc0"]);
        server.ip(&["addr", "add", "198.18.0.2/24", "dev", DIRECT_SERVER_IF]);
        for block in ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"] {
            client.ip(&["route", "add", block, "via", "198.18.0.2"]);
        }
        // Carrier comes asynchronously (slowly in an emulated VM): a host dump
        // taken before it would differ from one taken later.
        for (ns, ifname) in [(&client, "pc0"), (&server, DIRECT_SERVER_IF)] {
            crate::wait::until(
                &format!("carrier on {ifname}"),
                Duration::from_secs(10),
                || {
                    let link = ns.ip_output(&["-br", "link", "show", "dev", ifname]);
                    link.contains("LOWER_UP") && !link.contains("NO-CARRIER")
                },
            );
        }
        DirectLab { client, server }
    }
}

/// Everything `vip` may touch on a host, as the kernel reports it: addresses,
/// the main and local routing tables of both families, and the given sysctls.
/// An attached XDP program shows as `xdp/id:ID` (or `xdpgeneric/id:ID`) with
/// the id left out: an upgrade replaces the program behind the same attachment.
pub fn host_dump(ns: &Netns, sysctls: &[&str]) -> String {
    let mut dump = String::new();
    for args in [
        &["addr", "show"][..],
        &["-4", "route", "show", "table", "main"],
        &["-4", "route", "show", "table", "local"],
        &["-6", "route", "show", "table", "main"],
        &["-6", "route", "show", "table", "local"],
    ] {
        dump.push_str(&format!("$ ip {}\n{}", args.join(" "), ns.ip_output(args)));
    }
    let mut dump = without_program_ids(&dump);
    for key in sysctls {
        dump.push_str(&format!("{key} = {}\n", ns.read_sysctl(key)));
    }
    dump
}

/// Drift from outside: removes the AnyIP route `vip` installed for `cidr`.
pub fn drift_local_route(ns: &Netns, cidr: &str) {
    ns.ip(&["route", "del", "local", cidr, "dev", "lo", "table", "local"]);
}

fn without_program_ids(dump: &str) -> String {
    let mut out = String::with_capacity(dump.len());
    let mut rest = dump;
    while let Some(at) = rest.find("/id:") {
        let (before, after) = rest.split_at(at + "/id:".len());
        out.push_str(before);
        out.push_str("ID");
        rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// Panics, showing the differing lines, unless two host dumps are equal.
pub fn assert_same_dump(before: &str, after: &str, what: &str) {
    if before == after {
        return;
    }
    let only = |a: &str, b: &str| -> Vec<String> {
        a.lines()
            .filter(|l| !b.lines().any(|m| m == *l))
            .map(str::to_string)
            .collect()
    };
    panic!(
        "{what}: host state differs\nonly before: {:#?}\nonly after: {:#?}",
        only(before, after),
        only(after, before)
    );
}

/// A TCP listener and a UDP echo on the real server, on the wildcard address.
/// Accepted connections are held open, so the server never sends a FIN and a
/// client connection is exactly SYN, ACK, RST towards the VIP.
pub struct Services {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Services {
    pub fn start(ns: &Netns) -> Services {
        let stop = Arc::new(AtomicBool::new(false));
        let (tcp, udp) = ns.run_in(|| {
            let tcp = TcpListener::bind(("::", TCP_PORT)).expect("tcp listen");
            let udp = UdpSocket::bind(("::", UDP_PORT)).expect("udp bind");
            (tcp, udp)
        });
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let tcp_stop = stop.clone();
        let tcp_thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !tcp_stop.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        let udp_stop = stop.clone();
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !udp_stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(&buf[..n], peer);
                }
            }
        });
        Services {
            stop,
            threads: vec![tcp_thread, udp_thread],
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// From the client: one TCP connection to `vip`, closed with a RST.
pub fn tcp_connect(client: &Netns, vip: IpAddr, timeout: Duration) -> std::io::Result<()> {
    client.run_in(move || {
        let stream = TcpStream::connect_timeout(&SocketAddr::new(vip, TCP_PORT), timeout)?;
        // SO_LINGER 0: close sends a RST right away, and nothing else follows.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger)
            .expect("SO_LINGER");
        Ok(())
    })
}

/// From the client: one datagram to `vip`, true if it came back.
pub fn udp_echoes(client: &Netns, vip: IpAddr, timeout: Duration) -> bool {
    client.run_in(move || {
        let any: SocketAddr = if vip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .unwrap();
        let socket = UdpSocket::bind(any).expect("udp bind");
        socket.set_read_timeout(Some(timeout)).unwrap();
        let payload = format!("echo {vip}");
        socket
            .send_to(payload.as_bytes(), (vip, UDP_PORT))
            .expect("send");
        let mut buf = [0u8; 128];
        matches!(socket.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == payload.as_bytes())
    })
}

/// An ARP request from the router for `target`, on the server link.
pub fn arp_request_for(target: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&ROUTER_SERVER_MAC);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&ROUTER_SERVER_MAC);
    frame.extend_from_slice(&ROUTER_ON_SERVER_LINK_V4);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target);
    frame
}

/// An ARP reply that says where `target` is.
pub fn is_arp_reply_for(frame: &[u8], target: [u8; 4]) -> bool {
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 2]
        && frame[28..32] == target
}

/// An IPv6 Neighbor Solicitation from the router for `target`, to its
/// solicited-node multicast address.
pub fn neighbor_solicitation_for(target: std::net::Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = [
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    ];
    let group = std::net::Ipv6Addr::from(group);
    let dst_mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    let src: std::net::Ipv6Addr = "2001:db8:ff02::1".parse().unwrap();
    let mut payload = t.to_vec();
    payload.extend_from_slice(&[1, 1]); // source link-layer address option
    payload.extend_from_slice(&ROUTER_SERVER_MAC);
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(ROUTER_SERVER_MAC, dst_mac)
        .ipv6(src.octets(), group.octets(), 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut frame, &payload)
        .expect("NS serializes");
    frame
}

/// A Neighbor Advertisement for `target`.
pub fn is_neighbor_advertisement_for(frame: &[u8], target: std::net::Ipv6Addr) -> bool {
    frame.len() >= 78
        && frame[12..14] == [0x86, 0xdd]
        && frame[20] == 58
        && frame[54] == 136
        && frame[62..78] == target.octets()
}
