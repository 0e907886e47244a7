//! Changing a pinned bpf_link in place: replacing its program
//! (BPF_LINK_UPDATE), so that the interface or namespace never goes without
//! one, or detaching it (BPF_LINK_DETACH) whoever else holds it. aya 0.14
//! offers the first for XDP and TC links it created, but neither for
//! sk_lookup links nor for links opened from a pin, and not the second, so
//! these are raw `bpf(2)` calls.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use super::bpf_sys::{bpf, BPF_LINK_DETACH, BPF_LINK_UPDATE, BPF_OBJ_GET};

/// `union bpf_attr` for BPF_OBJ_GET.
#[repr(C)]
struct ObjGet {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    /// Explicit, so that it is zero: the kernel refuses non-zero bytes past
    /// the command's last field.
    _pad: u32,
}

/// `union bpf_attr` for BPF_LINK_UPDATE.
#[repr(C)]
struct LinkUpdate {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// `union bpf_attr` for BPF_LINK_DETACH.
#[repr(C)]
struct LinkDetach {
    link_fd: u32,
}

/// A new descriptor of the object pinned at `pin`.
fn open_pin(pin: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(pin.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut get = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    let fd = bpf(BPF_OBJ_GET, &mut get)?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Detaches the link pinned at `pin` from its interface or namespace now
/// (a link already detached, its interface gone, stays so). The pin stays.
pub(super) fn detach(pin: &Path) -> io::Result<()> {
    let link = open_pin(pin)?;
    let mut detach = LinkDetach {
        link_fd: link.as_raw_fd() as u32,
    };
    bpf(BPF_LINK_DETACH, &mut detach).map(drop)
}

/// Makes the link pinned at `pin` run `program` from now on.
pub(super) fn replace_program(pin: &Path, program: BorrowedFd<'_>) -> io::Result<()> {
    let link = open_pin(pin)?;
    let mut update = LinkUpdate {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: program.as_raw_fd() as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    bpf(BPF_LINK_UPDATE, &mut update).map(drop)
}
