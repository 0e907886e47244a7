//! The one bounds-checked accessor into packet memory, shared by every program type.

use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};

/// A packet's linear data, as a `[start, end)` range of addresses.
pub trait PacketBuf {
    fn start(&self) -> usize;
    fn end(&self) -> usize;

    /// Frame length as the program sees it; counted as "bytes".
    #[inline(always)]
    fn len(&self) -> u64 {
        (self.end() - self.start()) as u64
    }

    /// The interface the packet came in on, where the program can decapsulate
    /// tunnels (XDP); `None` where it cannot (TC).
    #[inline(always)]
    fn decap_ifindex(&self) -> Option<u32> {
        None
    }
}

impl PacketBuf for XdpContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }

    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }

    #[inline(always)]
    fn decap_ifindex(&self) -> Option<u32> {
        // SAFETY: the context pointer the kernel passed to this program.
        Some(unsafe { (*self.ctx).ingress_ifindex })
    }
}

impl PacketBuf for TcContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }

    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }

    /// The whole skb, not only its linear part.
    #[inline(always)]
    fn len(&self) -> u64 {
        u64::from(TcContext::len(self))
    }
}

/// The packet ends before the header the parser wanted.
pub struct Truncated;

/// Checks that the packet holds `len` bytes from `offset` on.
#[inline(always)]
pub fn check_len<B: PacketBuf>(buf: &B, offset: usize, len: usize) -> Result<(), Truncated> {
    if buf.start() + offset + len > buf.end() {
        return Err(Truncated);
    }
    Ok(())
}

/// A pointer to a `T` at `offset`, if the whole `T` lies inside the packet.
/// `T` must be a byte array or a struct of byte arrays (alignment 1): packet
/// headers are not aligned.
#[inline(always)]
pub fn ptr_at<T, B: PacketBuf>(buf: &B, offset: usize) -> Result<*const T, Truncated> {
    check_len(buf, offset, size_of::<T>())?;
    Ok((buf.start() + offset) as *const T)
}

/// Writes a `T` at `offset` (see [`ptr_at`]).
#[inline(always)]
pub fn write_at<T: Copy, B: PacketBuf>(buf: &B, offset: usize, value: T) -> Result<(), Truncated> {
    let p = ptr_at::<T, B>(buf, offset)?.cast_mut();
    // SAFETY: as for read_at; XDP and TC programs may write their packet data.
    unsafe { p.write_unaligned(value) };
    Ok(())
}

/// Reads a `T` at `offset` by value (see [`ptr_at`]).
#[inline(always)]
pub fn read_at<T: Copy, B: PacketBuf>(buf: &B, offset: usize) -> Result<T, Truncated> {
    // SAFETY: ptr_at checked that the whole T is inside the packet, and T has alignment 1.
    ptr_at::<T, B>(buf, offset).map(|p| unsafe { p.read_unaligned() })
}
