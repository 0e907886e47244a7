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

/// Reads a `T` at `offset` by value (see [`ptr_at`]).
#[inline(always)]
pub fn read_at<T: Copy, B: PacketBuf>(buf: &B, offset: usize) -> Result<T, Truncated> {
    // SAFETY: ptr_at checked that the whole T is inside the packet, and T has alignment 1.
    ptr_at::<T, B>(buf, offset).map(|p| unsafe { p.read_unaligned() })
}
