//! The end-to-end lab's second traffic source, for kernels that refuse XDP
//! live frames: ready-made frames written to an AF_PACKET socket bound to the
//! sender's interface, past the qdisc, many to a `sendmmsg` call.
//!
//! Each frame becomes an skb, built by the socket and taken by the receiving
//! veth's XDP program through its skb path, so a frame costs the shared core
//! far more than a live frame does (BENCHMARKS.md, "End to end through
//! veth"): rates are lower and ratios closer to 1, while the ns a
//! receiver adds over another in the same run stay its own.

use std::{
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

/// Frames to a `sendmmsg` call.
const BATCH: usize = 64;

/// A raw packet socket bound to one interface, for sending only.
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a socket on `interface` of the calling thread's namespace. It
    /// binds protocol 0, so it receives nothing, and bypasses the qdisc.
    pub fn bind(interface: &str) -> PacketSocket {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .unwrap_or_else(|e| panic!("interface {interface}: {e}"));
        // SAFETY: plain syscalls on values built here; the fd is owned at once.
        let fd = unsafe {
            let raw = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
            assert!(
                raw >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            OwnedFd::from_raw_fd(raw)
        };
        let one: libc::c_int = 1;
        // SAFETY: an int option of the right size.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert!(
            set == 0,
            "PACKET_QDISC_BYPASS: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: zero is a valid sockaddr_ll.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = ifindex as i32;
        // SAFETY: a sockaddr_ll of its own size.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert!(
            bound == 0,
            "binding to {interface}: {}",
            std::io::Error::last_os_error()
        );
        PacketSocket { fd }
    }

    /// Sends `frames` in turn, over and over, for about `duration`; returns
    /// the frames the kernel took and the time it took. A full device queue
    /// (ENOBUFS) is waited out, not counted.
    pub fn send_for(&self, frames: &[Vec<u8>], duration: Duration) -> (u64, Duration) {
        assert!(!frames.is_empty());
        let (start, mut sent, mut next) = (Instant::now(), 0u64, 0usize);
        while start.elapsed() < duration {
            let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| {
                let frame = &frames[(next + i) % frames.len()];
                libc::iovec {
                    iov_base: frame.as_ptr() as *mut libc::c_void,
                    iov_len: frame.len(),
                }
            });
            // SAFETY: zero is a valid mmsghdr; each points at its own iovec,
            // which outlives the call.
            let mut messages: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (message, iovec) in messages.iter_mut().zip(iovecs.iter_mut()) {
                message.msg_hdr.msg_iov = iovec;
                message.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: BATCH messages, each with one iovec over a live frame.
            let n = unsafe {
                libc::sendmmsg(self.fd.as_raw_fd(), messages.as_mut_ptr(), BATCH as u32, 0)
            };
            if n < 0 {
                let error = std::io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::ENOBUFS | libc::EAGAIN) => continue,
                    _ => panic!("sendmmsg: {error}"),
                }
            }
            sent += n as u64;
            next = (next + n as usize) % frames.len();
        }
        (sent, start.elapsed())
    }
}

/// `frame` once per target, the target written as its destination address at
/// `offset` (4 bytes for IPv4, 16 for IPv6), checksums left as they are: what
/// the live-frames generator (`bench_generator`) writes into each frame.
pub fn frames_to(frame: &[u8], offset: usize, targets: &[IpAddr]) -> Vec<Vec<u8>> {
    targets
        .iter()
        .map(|target| {
            let mut out = frame.to_vec();
            match target {
                IpAddr::V4(v4) => out[offset..offset + 4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => out[offset..offset + 16].copy_from_slice(&v6.octets()),
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_frame_carries_its_target_and_nothing_else_changes() {
        let frame: Vec<u8> = (0..64u8).collect();
        let targets: Vec<IpAddr> =
            vec!["192.0.2.1".parse().unwrap(), "192.0.2.200".parse().unwrap()];
        let frames = frames_to(&frame, 30, &targets);
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[0][30..34], &[192, 0, 2, 1]);
        assert_eq!(&frames[1][30..34], &[192, 0, 2, 200]);
        for out in &frames {
            assert_eq!(&out[..30], &frame[..30]);
            assert_eq!(&out[34..], &frame[34..]);
        }
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let frames = frames_to(&frame, 38, &[v6]);
        assert_eq!(
            &frames[0][38..54],
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(&frames[0][..38], &frame[..38]);
        assert_eq!(&frames[0][54..], &frame[54..]);
    }
}
