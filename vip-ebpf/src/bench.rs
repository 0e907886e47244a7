//! Programs for `cargo xtask bench` only, never attached. BPF_PROG_TEST_RUN runs
//! a program `repeat` times over one buffer, so a program that decapsulates
//! would find a bare frame from the second run on. [`restoring`] runs a program
//! and then puts the frame back as it came: a `bpf_xdp_adjust_head` call and
//! five loads and stores that are not vip's work. The bench times the same
//! harness around an empty program too, and takes that harness's cost out.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, programs::XdpContext};

use crate::cursor::{moved, read_at, Truncated};

/// A program the harness runs. A trait rather than a closure: LLVM does not
/// inline a closure this large, and a BPF-to-BPF call would be timed with it.
pub trait Benched {
    fn run(ctx: &XdpContext) -> u32;
}

/// The empty program: the harness alone.
pub struct Empty;

impl Benched for Empty {
    #[inline(always)]
    fn run(_ctx: &XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }
}

/// `P` on the frame, then the frame's first 34 bytes (Ethernet and an
/// outer IPv4 header) and its start put back. The helper is called whether or
/// not `P` moved the start, so that both bench programs do the same work.
#[inline(always)]
pub fn restoring<P: Benched>(ctx: &XdpContext) -> u32 {
    let saved: Result<([u64; 4], u16), Truncated> = (|| {
        Ok((
            [
                read_at(ctx, 0)?,
                read_at(ctx, 8)?,
                read_at(ctx, 16)?,
                read_at(ctx, 24)?,
            ],
            read_at(ctx, 32)?,
        ))
    })();
    let Ok((words, tail)) = saved else {
        return xdp_action::XDP_ABORTED;
    };
    let start = ctx.data();
    let action = P::run(ctx);
    let stripped = ctx.data() - start;
    // SAFETY: growing the head back by what `P` removed (maybe nothing).
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(stripped as i32)) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    let restored = moved(ctx, 34).and_then(|frame| {
        for (i, word) in words.into_iter().enumerate() {
            frame.write(i * 8, word)?;
        }
        frame.write(32, tail)
    });
    if restored.is_err() {
        return xdp_action::XDP_ABORTED;
    }
    action
}
