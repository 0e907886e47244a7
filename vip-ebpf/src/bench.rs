//! Programs for `cargo xtask bench` only, never attached. BPF_PROG_TEST_RUN runs
//! a program `repeat` times over one buffer, so a program that decapsulates
//! would find a bare frame from the second run on. [`restoring`] runs a program
//! and then puts the frame back as it came: a `bpf_xdp_adjust_head` call and
//! the frame's first 34 bytes, which are not vip's work. The bench times the
//! same harness around an empty program too, and takes that harness's cost out.
//!
//! Built only with the `bench` feature, into the bench's own object: the
//! object vip ships has none of this.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_head,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};

use crate::cursor::{moved, read_at};

/// `vip_xdp` in the frame-restoring harness.
#[xdp]
#[inline(always)]
pub fn bench_vip_xdp_decap(ctx: XdpContext) -> u32 {
    restoring::<VipXdp>(&ctx)
}

struct VipXdp;

impl Benched for VipXdp {
    #[inline(always)]
    fn run(ctx: &XdpContext) -> u32 {
        crate::run_xdp(ctx)
    }
}

/// The same harness around an empty program, to time the harness alone.
#[xdp]
#[inline(always)]
pub fn bench_harness_only(ctx: XdpContext) -> u32 {
    restoring::<Empty>(&ctx)
}

/// What the harness keeps while the program runs: the frame's first 34 bytes
/// (Ethernet and an outer IPv4 header) and where it started. In a map rather
/// than in locals, so that nothing of the harness's is live across the
/// program: locals take registers from the program's own code (0.5 to 0.9 ns
/// more for vip_xdp in A/B runs, within noise) and time the harness with it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Saved {
    words: [u64; 4],
    tail: u64,
    start: u64,
}

#[map]
static VIP_BENCH_SAVED: PerCpuArray<Saved> = PerCpuArray::with_max_entries(1, 0);

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

/// `P` on the frame, then the frame's first 34 bytes and its start put back.
/// The helper is called whether or not `P` moved the start, so that both bench
/// programs do the same work.
#[inline(always)]
pub fn restoring<P: Benched>(ctx: &XdpContext) -> u32 {
    if save(ctx).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    let action = P::run(ctx);
    if restore(ctx).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    action
}

/// This CPU's slot. Volatile accesses through it, so that the compiler keeps
/// the values in the map instead of in registers across the program.
#[inline(always)]
fn slot() -> Option<*mut Saved> {
    VIP_BENCH_SAVED.get_ptr_mut(0)
}

#[inline(always)]
fn save(ctx: &XdpContext) -> Option<()> {
    let saved = Saved {
        words: [
            read_at(ctx, 0).ok()?,
            read_at(ctx, 8).ok()?,
            read_at(ctx, 16).ok()?,
            read_at(ctx, 24).ok()?,
        ],
        tail: u64::from(read_at::<u16, _>(ctx, 32).ok()?),
        start: ctx.data() as u64,
    };
    // SAFETY: this CPU's slot, and XDP programs do not nest on a CPU.
    unsafe { core::ptr::write_volatile(slot()?, saved) };
    Some(())
}

#[inline(always)]
fn restore(ctx: &XdpContext) -> Option<()> {
    // SAFETY: as in `save`.
    let saved = unsafe { core::ptr::read_volatile(slot()?) };
    let stripped = ctx.data() as u64 - saved.start;
    // SAFETY: growing the head back by what `P` removed (maybe nothing).
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(stripped as i32)) } != 0 {
        return None;
    }
    let frame = moved(ctx, 34).ok()?;
    for (i, word) in saved.words.into_iter().enumerate() {
        frame.write(i * 8, word).ok()?;
    }
    frame.write(32, saved.tail as u16).ok()
}
