//! The one bounds-checked accessor into packet memory, shared by every program type.

use core::mem::{offset_of, size_of};

use aya_ebpf::{
    bindings::xdp_md,
    programs::{TcContext, XdpContext},
};

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

    /// Both loads and the subtraction in one asm block. Written in Rust, the
    /// compiler may copy `ctx->data` with a 32-bit move (it knows the field is
    /// a u32) before subtracting; the verifier takes such a copy for a scalar
    /// and refuses the program ("pointer arithmetic on pkt_end prohibited").
    /// Throwaway builds of the classifier hit that (NOTES.md, thirty-fourth
    /// and thirty-fifth sessions); timed over five code layouts (thirty-sixth),
    /// this form costs nothing measurable.
    #[inline(always)]
    fn len(&self) -> u64 {
        let len: u64;
        // SAFETY: reads the context's data_end and data fields, which the
        // verifier rewrites to the packet pointers, and subtracts them;
        // nothing is written.
        unsafe {
            core::arch::asm!(
                "{len} = *(u32 *)({ctx} + {data_end})",
                "{start} = *(u32 *)({ctx} + {data})",
                "{len} -= {start}",
                ctx = in(reg) self.ctx,
                data_end = const offset_of!(xdp_md, data_end),
                data = const offset_of!(xdp_md, data),
                len = out(reg) len,
                start = out(reg) _,
                options(pure, readonly, nostack),
            );
        }
        len
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
/// Packet headers are not aligned: the pointer is only read or written
/// unaligned. Header fields are byte arrays (or structs of them), so that their
/// byte order is visible at the read; plain integers only move bytes unchanged.
#[inline(always)]
pub fn ptr_at<T, B: PacketBuf>(buf: &B, offset: usize) -> Result<*const T, Truncated> {
    check_len(buf, offset, size_of::<T>())?;
    Ok((buf.start() + offset) as *const T)
}

/// The first `len` bytes of an XDP frame right after a helper moved its start
/// (`bpf_xdp_adjust_head`), checked once: the bounds are read afresh (volatile),
/// so that the compiler cannot reuse a packet pointer from before the move,
/// which the verifier no longer accepts.
pub struct Moved {
    start: usize,
    len: usize,
}

#[inline(always)]
pub fn moved(ctx: &XdpContext, len: usize) -> Result<Moved, Truncated> {
    // SAFETY: the context pointer the kernel passed to the program.
    let (start, end) = unsafe {
        (
            core::ptr::read_volatile(&(*ctx.ctx).data) as usize,
            core::ptr::read_volatile(&(*ctx.ctx).data_end) as usize,
        )
    };
    if start + len > end {
        return Err(Truncated);
    }
    Ok(Moved { start, len })
}

impl Moved {
    /// Writes a `T` at `offset`, which must lie within the checked length (with
    /// constant arguments the compiler drops this second check).
    #[inline(always)]
    pub fn write<T: Copy>(&self, offset: usize, value: T) -> Result<(), Truncated> {
        if offset + size_of::<T>() > self.len {
            return Err(Truncated);
        }
        // SAFETY: inside the packet (checked in `moved`); written unaligned.
        unsafe { ((self.start + offset) as *mut T).write_unaligned(value) };
        Ok(())
    }
}

/// Reads a `T` at `offset` by value (see [`ptr_at`]).
#[inline(always)]
pub fn read_at<T: Copy, B: PacketBuf>(buf: &B, offset: usize) -> Result<T, Truncated> {
    // SAFETY: ptr_at checked that the whole T is inside the packet; read unaligned.
    ptr_at::<T, B>(buf, offset).map(|p| unsafe { p.read_unaligned() })
}
