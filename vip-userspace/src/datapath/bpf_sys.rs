//! The raw `bpf(2)` call, for the commands aya 0.14 does not offer.

use std::io;

// `enum bpf_cmd` in linux/bpf.h.
pub(super) const BPF_OBJ_GET: libc::c_long = 7;
pub(super) const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
pub(super) const BPF_LINK_UPDATE: libc::c_long = 29;
pub(super) const BPF_LINK_DETACH: libc::c_long = 34;

/// Runs `command` with `attr`, a `union bpf_attr` prefix laid out for it.
pub(super) fn bpf<T>(command: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, correctly laid out `bpf_attr` prefix of the
    // size passed; the kernel zero-extends the rest.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            std::ptr::from_mut(attr),
            size_of::<T>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
