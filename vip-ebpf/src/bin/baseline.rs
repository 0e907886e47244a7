//! Programs for `cargo xtask bench`, kept out of the production object: the
//! cheapest XDP programs there are (the baselines), and the traffic generator of
//! the end-to-end lab.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

#[xdp]
pub fn baseline_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn baseline_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Destination addresses the generator cycles through (network order; IPv4 uses
/// the first 4 bytes). Userspace sizes and fills it.
#[map]
static GEN_TARGETS: Array<[u8; 16]> = Array::with_max_entries(1, 0);
/// [0]: number of targets; [1]: offset of the destination address in the frame;
/// [2]: its length (4 or 16).
#[map]
static GEN_CONFIG: Array<u32> = Array::with_max_entries(3, 0);
#[map]
static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

const MAX_DST_OFFSET: usize = 64;

/// Run under BPF_PROG_TEST_RUN with live frames: writes the next destination into
/// the frame and transmits it out of the test's ingress interface.
#[xdp]
pub fn bench_generator(ctx: XdpContext) -> u32 {
    // Every frame gets its destination written, one target or many, so that the
    // generator does the same work in the cases a comparison puts side by side.
    let count = GEN_CONFIG.get(0).copied().unwrap_or(0);
    if count > 0 {
        let offset = GEN_CONFIG.get(1).copied().unwrap_or(0) as usize;
        let len = GEN_CONFIG.get(2).copied().unwrap_or(4) as usize;
        if let Some(seq) = GEN_SEQ.get_ptr_mut(0) {
            // SAFETY: per-CPU slot.
            let index = unsafe {
                *seq = (*seq + 1) % count;
                *seq
            };
            if let Some(target) = GEN_TARGETS.get(index) {
                let start = ctx.data();
                if offset <= MAX_DST_OFFSET && start + offset + 16 <= ctx.data_end() {
                    let dst = (start + offset) as *mut u8;
                    // SAFETY: the 16 bytes from offset are inside the frame (checked).
                    unsafe {
                        if len == 16 {
                            core::ptr::copy_nonoverlapping(target.as_ptr(), dst, 16);
                        } else {
                            core::ptr::copy_nonoverlapping(target.as_ptr(), dst, 4);
                        }
                    }
                }
            }
        }
    }
    xdp_action::XDP_TX
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
