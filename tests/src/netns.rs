//! Throwaway network namespaces joined by veth pairs. Every namespace is deleted
//! when its guard drops, panics included. Nothing here touches the host's own
//! namespace: links are created directly inside the namespaces.

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sched::{setns, CloneFlags};

use crate::packets::{CLIENT_MAC, SERVER_MAC};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `vipt-<tag>-<pid>-<n>`, with IPv6 off (no DAD, MLD or RS noise in
    /// the counters) and `lo` up.
    pub fn new(tag: &str) -> Netns {
        let ns = Netns::with_ipv6(tag);
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
        ns
    }

    /// Like [`Netns::new`], with IPv6 left on.
    pub fn with_ipv6(tag: &str) -> Netns {
        let name = format!(
            "vipt-{tag}-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS`'s output.
    pub fn ip_output(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("running ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// Reads a sysctl of this namespace; a key with slashes is a path under
    /// /proc/sys as it is (for an interface name with dots).
    pub fn read_sysctl(&self, key: &str) -> String {
        let path = if key.contains('/') {
            format!("/proc/sys/{key}")
        } else {
            format!("/proc/sys/{}", key.replace('.', "/"))
        };
        self.run_in(move || {
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {path}: {e}"))
                .trim()
                .to_string()
        })
    }

    /// Sends `frame` out of `ifname`, then returns the first frame received on
    /// `ifname` within `timeout` for which `wanted` holds.
    pub fn exchange(
        &self,
        ifname: &str,
        frame: Vec<u8>,
        timeout: std::time::Duration,
        wanted: impl Fn(&[u8]) -> bool + Send + 'static,
    ) -> Option<Vec<u8>> {
        let ifname = ifname.to_string();
        self.run_in(move || {
            let socket = PacketSocket::bind(&ifname);
            socket.listen(timeout);
            socket.send(&frame);
            let deadline = std::time::Instant::now() + timeout;
            while std::time::Instant::now() < deadline {
                match socket.recv() {
                    Some(received) if wanted(&received) => return Some(received),
                    _ => {}
                }
            }
            None
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Whether an XDP program (native or generic) is attached to `ifname`.
    pub fn has_xdp(&self, ifname: &str) -> bool {
        self.xdp_prog_id(ifname).is_some()
    }

    /// The id of the XDP program attached to `ifname`, from `ip link show`.
    pub fn xdp_prog_id(&self, ifname: &str) -> Option<u32> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", ifname])
            .output()
            .expect("running ip link show");
        assert!(
            out.status.success(),
            "ip link show {ifname}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let (_, after) = text.split_once("prog/xdp id ")?;
        let id = after.split_whitespace().next()?;
        Some(id.parse().expect("a numeric program id"))
    }

    /// Writes a sysctl of this namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_string();
        self.run_in(move || {
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("writing {path}: {e}"))
        });
    }

    /// A command that runs in this namespace. Only the network namespace is
    /// switched (unlike `ip netns exec`), so bpffs pins stay shared with the caller.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let ns = self.open();
        let mut command = Command::new(program);
        // SAFETY: setns is async-signal-safe; the fd stays open in the closure.
        unsafe {
            command.pre_exec(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
        command
    }

    /// Runs `f` on a thread that has joined this namespace.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = self.open();
        std::thread::spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Moves the calling thread into this namespace (for scoped threads).
    pub fn enter(&self) {
        setns(self.open(), CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
    }

    /// Spawns a thread that has joined this namespace, running `f`.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let ns = self.open();
        std::thread::spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
            f()
        })
    }

    fn open(&self) -> File {
        File::open(format!("/run/netns/{}", self.name)).expect("opening the netns handle")
    }

    /// Sends raw frames out of `ifname` with an AF_PACKET socket, exactly as given.
    pub fn send_frames(&self, ifname: &str, frames: Vec<Vec<u8>>) {
        let ifname = ifname.to_string();
        self.run_in(move || {
            let socket = PacketSocket::bind(&ifname);
            for frame in &frames {
                socket.send(frame);
            }
        });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

struct PacketSocket {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    fn bind(ifname: &str) -> PacketSocket {
        let ifindex = nix::net::if_::if_nametoindex(ifname).expect("interface in namespace") as i32;
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            raw >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        PacketSocket { fd, ifindex }
    }

    /// Receives every frame of the interface from now on; `recv` waits at most
    /// `timeout` for each.
    fn listen(&self, timeout: std::time::Duration) {
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = self.ifindex;
        // SAFETY: addr is a valid sockaddr_ll.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as i64,
            tv_usec: i64::from(timeout.subsec_micros()),
        };
        // SAFETY: tv is a valid timeval.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    }

    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n > 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }

    fn send(&self, frame: &[u8]) {
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        let send = || {
            // SAFETY: addr is a valid sockaddr_ll and frame outlives the call.
            unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            }
        };
        let mut sent = send();
        // A sender on each CPU can fill the socket's send buffer faster than
        // the veth drains it: ENOBUFS then means "later", not a lost frame.
        for _ in 0..1000 {
            if sent >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOBUFS) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
            sent = send();
        }
        assert_eq!(
            sent,
            frame.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A client and a server namespace joined by one veth pair with fixed MACs:
/// `client_if` in the client, `server_if` in the server.
pub struct Lab {
    pub client: Netns,
    pub server: Netns,
}

impl Lab {
    pub const CLIENT_IF: &'static str = "vipc0";
    pub const SERVER_IF: &'static str = "vips0";

    pub fn new(tag: &str) -> Lab {
        let lab = Lab {
            client: Netns::new(&format!("{tag}c")),
            server: Netns::new(&format!("{tag}s")),
        };
        lab.create_link();
        lab
    }

    /// Deletes the veth pair and creates it again, names and MACs the same
    /// (the ifindexes new), as a driver reload or a network manager would.
    pub fn recreate_link(&self) {
        self.server.ip(&["link", "del", Self::SERVER_IF]);
        self.create_link();
    }

    /// Creates the veth pair (after it was deleted), names and MACs as
    /// [`Lab::new`] gives them.
    pub fn create_link(&self) {
        veth(
            (&self.client, Self::CLIENT_IF, Some(CLIENT_MAC)),
            (&self.server, Self::SERVER_IF, Some(SERVER_MAC)),
        );
    }

    /// A 90-byte UDP frame to `port` of each address, `per_vip(i)` times for
    /// the `i`th, sent from the client; returns how many.
    pub fn send_udp(
        &self,
        vips: &[std::net::IpAddr],
        port: u16,
        per_vip: impl Fn(usize) -> u64,
    ) -> u64 {
        let frames: Vec<Vec<u8>> = vips
            .iter()
            .enumerate()
            .flat_map(|(i, &vip)| {
                let frame = crate::packets::FrameSpec::udp(vip, port)
                    .frame_len(90)
                    .build();
                std::iter::repeat_n(frame, per_vip(i) as usize)
            })
            .collect();
        let sent = frames.len() as u64;
        self.client.send_frames(Lab::CLIENT_IF, frames);
        sent
    }
}

/// Creates a veth pair between two namespaces, each end named and optionally
/// given a MAC address, directly inside them (never in the host namespace), and
/// sets both ends up.
pub fn veth(a: (&Netns, &str, Option<[u8; 6]>), b: (&Netns, &str, Option<[u8; 6]>)) {
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let mut args = vec!["link".to_string(), "add".to_string(), a.1.to_string()];
    if let Some(m) = a.2 {
        args.extend(["address".to_string(), mac(m)]);
    }
    args.extend(["type", "veth", "peer", "name"].map(String::from));
    args.extend([b.1.to_string(), "netns".to_string(), b.0.name().to_string()]);
    if let Some(m) = b.2 {
        args.extend(["address".to_string(), mac(m)]);
    }
    a.0.ip(&args.iter().map(String::as_str).collect::<Vec<_>>());
    a.0.ip(&["link", "set", a.1, "up"]);
    b.0.ip(&["link", "set", b.1, "up"]);
}
