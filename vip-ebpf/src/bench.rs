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
use vip_common::{Verdicts, FLOOR_V4_PREFIX, FLOOR_V4_VIPS, IPPROTO_IPIP};

use crate::cursor::{moved, ptr_at, read_at};

/// Instructions that shift vip_xdp's code without running: `VIP_BENCH_LAYOUT_PAD`
/// at build time (a count, 0 when unset), put in a path no bench frame takes
/// (an IPv4 header with options), whose five inlined copies lie before the
/// IPv6, counting and decap code. On the AMD EPYC of family 25 model 17 the
/// same code moved so took up to 2 ns more or less on an IPv6 hit (NOTES.md,
/// thirty-fifth session): `tools/layout-variants.py` builds an object per
/// count, and `tools/ab-vip.py --objects` pools them, so that a datapath
/// change is judged over several layouts rather than the one it happens to get.
/// Not a pure shift: the compiler keeps nothing in r0 across the padding, and
/// that moved registers where headers past the IP header are read (the
/// allow-list and decap cases), though not in the IPv4 or IPv6 hit paths,
/// whose code stays the same.
const LAYOUT_PAD: usize = match option_env!("VIP_BENCH_LAYOUT_PAD") {
    Some(count) => parse_count(count.as_bytes()),
    None => 0,
};

const fn parse_count(digits: &[u8]) -> usize {
    assert!(!digits.is_empty(), "VIP_BENCH_LAYOUT_PAD: a count");
    let mut count = 0;
    let mut i = 0;
    while i < digits.len() {
        assert!(digits[i].is_ascii_digit(), "VIP_BENCH_LAYOUT_PAD: a count");
        count = count * 10 + (digits[i] - b'0') as usize;
        i += 1;
    }
    assert!(count <= 4096, "VIP_BENCH_LAYOUT_PAD: at most 4096");
    count
}

/// [`LAYOUT_PAD`] times `r0 = 0`, r0 declared clobbered.
#[inline(always)]
pub fn layout_pad() {
    if LAYOUT_PAD != 0 {
        // SAFETY: writes r0 only, which the asm declares clobbered.
        unsafe {
            core::arch::asm!(
                ".rept {count}",
                "r0 = 0",
                ".endr",
                count = const LAYOUT_PAD,
                out("r0") _,
                options(nomem, nostack),
            );
        }
    }
}

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

/// The decap floor in the same harness.
#[xdp]
#[inline(always)]
pub fn bench_floor_decap(ctx: XdpContext) -> u32 {
    restoring::<FloorDecap>(&ctx)
}

/// The decap floor's per-VIP counters, one per address of `FLOOR_V4_PREFIX`/24.
#[map]
static VIP_BENCH_FLOOR_DECAP: PerCpuArray<Verdicts> =
    PerCpuArray::with_max_entries(FLOOR_V4_VIPS, 0);

/// The floor of IPIP decapsulation (issue 19): the least an XDP program can do
/// to take an IPv4-in-IPv4 packet to a VIP, count it for its inner VIP and hand
/// the inner packet on. No VLANs; outer header: IPv4 without options, protocol
/// 4, not a fragment; inner header: IPv4 without options, destination in
/// `FLOOR_V4_PREFIX`/24; this CPU's slot of the last octet counted with the
/// inner length; the outer header removed (`bpf_xdp_adjust_head`) and the
/// Ethernet header written in front of the inner one; XDP_PASS. Anything else
/// passes untouched.
pub struct FloorDecap;

impl Benched for FloorDecap {
    #[inline(always)]
    fn run(ctx: &XdpContext) -> u32 {
        floor_decap(ctx).unwrap_or(xdp_action::XDP_PASS)
    }
}

#[inline(always)]
fn floor_decap(ctx: &XdpContext) -> Option<u32> {
    const INNER: usize = 14 + 20;
    let frame = ptr_at::<[u8; INNER + 20], _>(ctx, 0).ok()?.cast::<u8>();
    // SAFETY: every read is inside the 54 bytes ptr_at checked.
    let read = |offset: usize| unsafe { frame.add(offset).read() };
    // SAFETY: as above.
    let (eth_a, eth_b, inner_dst) = unsafe {
        (
            frame.cast::<u64>().read_unaligned(),
            frame.add(8).cast::<u32>().read_unaligned(),
            frame.add(INNER + 16).cast::<[u8; 4]>().read_unaligned(),
        )
    };
    let [a, b, c] = FLOOR_V4_PREFIX;
    let prefix = u32::from_ne_bytes([0xff, 0xff, 0xff, 0]);
    if [read(12), read(13)] != [0x08, 0x00]
        || read(14) != 0x45
        || read(14 + 9) != IPPROTO_IPIP
        || read(14 + 6) & 0x3f != 0
        || read(14 + 7) != 0
        || read(INNER) != 0x45
        || u32::from_ne_bytes(inner_dst) & prefix != u32::from_ne_bytes([a, b, c, 0])
    {
        return None;
    }
    let counters = VIP_BENCH_FLOOR_DECAP.get_ptr_mut(u32::from(inner_dst[3]))?;
    let inner_len = (ctx.data_end() - ctx.data() - 20) as u64;
    // SAFETY: this CPU's entry; XDP programs do not nest on one CPU.
    unsafe { (*counters).accepted.add(inner_len) };
    // SAFETY: removing the outer header, which lies inside the frame.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, 20) } != 0 {
        return None;
    }
    let eth = moved(ctx, 14).ok()?;
    eth.write(0, eth_a).ok()?;
    eth.write(8, eth_b).ok()?;
    eth.write(12, [0x08u8, 0x00]).ok()?;
    Some(xdp_action::XDP_PASS)
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
