//! Finding a steer target's socket: sock_diag for the socket listening (TCP) or
//! bound (UDP) on the address, /proc for the process that holds it, then
//! `pidfd_getfd` for a descriptor of our own, which the SOCKMAP takes.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{FromRawFd, OwnedFd, RawFd},
};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NetlinkAddr};
use vip_common::IPPROTO_TCP;

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("sock_diag: {0}")]
    SockDiag(#[source] io::Error),
    #[error("sock_diag: unexpected reply {0}")]
    Reply(String),
    #[error("taking socket {fd} of pid {pid}: {source}{}", take_hint(source))]
    Take {
        pid: u32,
        fd: RawFd,
        source: io::Error,
    },
}

/// pidfd_getfd needs ptrace access to the owner: CAP_SYS_PTRACE for a process of
/// another user.
fn take_hint(error: &io::Error) -> &'static str {
    if error.raw_os_error() == Some(libc::EPERM) {
        " (vip needs CAP_SYS_PTRACE to take another user's socket)"
    } else {
        ""
    }
}

/// A socket found by sock_diag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// The kernel's cookie for the socket: a new socket (a restarted service)
    /// has a new one.
    pub cookie: u64,
    pub inode: u32,
}

/// The socket listening (TCP) or bound, unconnected (UDP), on exactly `to`.
pub fn find(proto: u8, to: SocketAddr) -> Result<Option<Found>, DiscoverError> {
    let (family, socket_id) = match to.ip() {
        IpAddr::V4(_) => (AF_INET, SocketId::new_v4()),
        IpAddr::V6(_) => (AF_INET6, SocketId::new_v6()),
    };
    let states = if proto == IPPROTO_TCP {
        StateFlags::LISTEN
    } else {
        StateFlags::CLOSE
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: proto,
            extensions: ExtensionFlags::empty(),
            states,
            socket_id,
        })
        .into(),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);

    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(DiscoverError::SockDiag)?;
    socket.bind_auto().map_err(DiscoverError::SockDiag)?;
    socket
        .connect(&NetlinkAddr::new(0, 0))
        .map_err(DiscoverError::SockDiag)?;
    socket.send(&buf, 0).map_err(DiscoverError::SockDiag)?;

    let mut found = None;
    let mut receive = vec![0; 65536];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .map_err(DiscoverError::SockDiag)?;
        let mut offset = 0;
        while offset < size {
            let message = <NetlinkMessage<SockDiagMessage>>::deserialize(&receive[offset..size])
                .map_err(|e| DiscoverError::Reply(e.to_string()))?;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    let id = &response.header.socket_id;
                    if found.is_none()
                        && id.source_port == to.port()
                        && id.source_address == to.ip()
                    {
                        found = Some(Found {
                            cookie: u64::from_ne_bytes(id.cookie),
                            inode: response.header.inode,
                        });
                    }
                }
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return Err(DiscoverError::Reply(format!("{e:?}")));
                }
                _ => {}
            }
            let length = message.header.length as usize;
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

/// Where the socket with an inode was looked for in /proc.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// The process and the descriptor holding it.
    Found { pid: u32, fd: RawFd },
    /// No process readable to vip holds it; `refused` processes' descriptors
    /// could not be read (a missing CAP_DAC_READ_SEARCH or CAP_SYS_PTRACE).
    NotFound { refused: usize },
}

/// The process and descriptor holding the socket with this inode.
pub fn owner(inode: u32) -> Owner {
    let target = format!("socket:[{inode}]");
    let mut refused = 0;
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Owner::NotFound { refused };
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let fds = match std::fs::read_dir(process.path().join("fd")) {
            Ok(fds) => fds,
            Err(e) => {
                refused += usize::from(e.kind() == io::ErrorKind::PermissionDenied);
                continue;
            }
        };
        let mut denied = false;
        for fd in fds.flatten() {
            match std::fs::read_link(fd.path()) {
                Ok(link) if link.as_os_str() == target.as_str() => {
                    if let Some(fd) = fd.file_name().to_str().and_then(|n| n.parse().ok()) {
                        return Owner::Found { pid, fd };
                    }
                }
                Ok(_) => {}
                Err(e) => denied |= e.kind() == io::ErrorKind::PermissionDenied,
            }
        }
        refused += usize::from(denied);
    }
    Owner::NotFound { refused }
}

/// A descriptor of our own for `fd` of process `pid` (`pidfd_getfd`).
pub fn take(pid: u32, fd: RawFd) -> Result<OwnedFd, DiscoverError> {
    let error = |source| DiscoverError::Take { pid, fd, source };
    // SAFETY: plain syscalls; each returned descriptor is owned right away.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        if pidfd < 0 {
            return Err(error(io::Error::last_os_error()));
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let ours = libc::syscall(
            libc::SYS_pidfd_getfd,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            fd,
            0,
        );
        if ours < 0 {
            return Err(error(io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(ours as RawFd))
    }
}
