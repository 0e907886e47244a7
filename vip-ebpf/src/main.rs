//! vip's datapath programs. Entry points only: each is a thin wrapper around a
//! `try_*` function, and the failure verdict of each is chosen here.
#![no_std]
#![no_main]

mod classify;
mod count;
mod cursor;
mod lookup;
mod parse;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

use classify::{classify, Verdict};

/// Counts packets to the configured ranges and passes everything.
///
/// Failure verdict: XDP_PASS. A packet vip cannot parse (counted as malformed) or a
/// map inconsistency (counted as an internal error) must never black-hole traffic
/// while no policy is configured.
#[xdp]
pub fn vip_xdp(ctx: XdpContext) -> u32 {
    match try_vip_xdp(&ctx) {
        Ok(action) => action,
        Err(failure) => {
            count::global(failure.global_counter());
            xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn try_vip_xdp(ctx: &XdpContext) -> Result<u32, classify::Failure> {
    Ok(match classify(ctx)? {
        Verdict::Pass => xdp_action::XDP_PASS,
    })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
