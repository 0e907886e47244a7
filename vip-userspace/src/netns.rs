//! The network namespace vip runs in. Run files and pins record it, so one
//! namespace's vip never reads or repairs another's items, and it picks the
//! default directories, so instances in two namespaces never meet.

use std::{fmt, os::unix::fs::MetadataExt, path::PathBuf};

use serde::{Deserialize, Serialize};

/// A network namespace: the inode of its `/proc/PID/ns/net`, unique while it
/// exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetnsId(pub u64);

/// The kernel's fixed inode for the initial network namespace (PROC_NET_INIT_INO).
pub const INITIAL: NetnsId = NetnsId(0xEFFF_FFF9);

impl fmt::Display for NetnsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == INITIAL {
            write!(f, "the initial network namespace")
        } else {
            write!(f, "network namespace {}", self.0)
        }
    }
}

/// The calling thread's network namespace.
pub fn current() -> NetnsId {
    let inode = std::fs::metadata("/proc/thread-self/ns/net")
        .expect("/proc/thread-self/ns/net: /proc must be mounted")
        .ino();
    NetnsId(inode)
}

/// `/sys/fs/bpf/vip` in the initial namespace, `/sys/fs/bpf/vip-netns-INODE` in another.
pub fn default_pin_dir() -> PathBuf {
    per_namespace("/sys/fs/bpf/vip", "-netns-")
}

/// `/run/vip` in the initial namespace, `/run/vip/netns-INODE` in another.
pub fn default_run_dir() -> PathBuf {
    per_namespace("/run/vip", "/netns-")
}

fn per_namespace(base: &str, separator: &str) -> PathBuf {
    match current() {
        INITIAL => PathBuf::from(base),
        NetnsId(inode) => PathBuf::from(format!("{base}{separator}{inode}")),
    }
}
