//! vip's datapath programs. Entry points only: each is a thin wrapper around a
//! `try_*` function, and the failure verdict of each is chosen here.
#![no_std]
#![no_main]
// `parse::unpinned`'s one instruction the verifier cannot follow.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(feature = "bench")]
mod bench;
mod classify;
mod count;
mod cursor;
mod decap;
mod lookup;
mod parse;
mod policy;
mod steer;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK, TC_ACT_SHOT},
    macros::{classifier, sk_lookup, xdp},
    programs::{SkLookupContext, TcContext, XdpContext},
};

use classify::{classify, Failure, Verdict};
use vip_common::BUILD_ID_LEN;

/// Counts packets to the configured ranges and drops what their allow lists do
/// not allow.
///
/// Decapsulates tunnels to VIPs on the interfaces configured to.
///
/// Failure verdict: XDP_PASS. A packet whose IP header vip cannot parse (counted as
/// malformed) or a map inconsistency (counted as an internal error) must never be
/// black-holed: it may not even be for a VIP. A tunnelled packet that fails so is
/// passed as it came, still encapsulated.
// `#[inline(always)]` under each entry point's macro applies to the function
// the macro wraps: without it the wrapper calls the body (a BPF-to-BPF call).
#[xdp]
#[inline(always)]
pub fn vip_xdp(ctx: XdpContext) -> u32 {
    run_xdp(&ctx)
}

#[inline(always)]
fn run_xdp(ctx: &XdpContext) -> u32 {
    match try_vip_xdp(ctx) {
        Ok(action) => action,
        Err(failure) => {
            count::global(failure.global_counter());
            xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn try_vip_xdp(ctx: &XdpContext) -> Result<u32, Failure> {
    Ok(match classify(ctx)? {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
    })
}

/// The same classifier as a TC ingress program, where XDP cannot attach.
///
/// Failure verdict: TC_ACT_OK, for the same reasons as `vip_xdp`.
#[classifier]
#[inline(always)]
pub fn vip_tc(ctx: TcContext) -> i32 {
    match try_vip_tc(&ctx) {
        Ok(action) => action,
        Err(failure) => {
            count::global(failure.global_counter());
            TC_ACT_OK
        }
    }
}

/// Headers vip may read: Ethernet, two VLAN tags, IPv6 and six extension headers
/// fit well within this.
const TC_PULL_LEN: u32 = 256;

#[inline(always)]
fn try_vip_tc(ctx: &TcContext) -> Result<i32, Failure> {
    // The headers may not all be in the linear part of the skb.
    let _ = ctx.pull_data(ctx.len().min(TC_PULL_LEN));
    Ok(match classify(ctx)? {
        Verdict::Pass => TC_ACT_OK,
        Verdict::Drop => TC_ACT_SHOT,
    })
}

/// Steers socket lookups for VIPs to the sockets of their steer entries, and
/// counts the lookups that reach a socket vip knows of.
///
/// Never fails: every outcome returns SK_PASS, so that the kernel's own lookup
/// goes on when vip assigned nothing (no entry, or its socket is down).
#[sk_lookup]
pub fn vip_sk_lookup(ctx: SkLookupContext) -> u32 {
    steer::steer(&ctx);
    SK_PASS
}

/// `enum sk_action`: let the lookup go on (with the socket assigned, if any).
const SK_PASS: u32 = 1;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// This object's build id, which the loader records with the running programs
/// (`vip_common::BUILD_SECTION`; `cargo xtask build` sets `VIP_BUILD_ID`).
#[unsafe(link_section = "vip_build")]
#[unsafe(no_mangle)]
static VIP_BUILD: [u8; BUILD_ID_LEN] = build_id();

const fn build_id() -> [u8; BUILD_ID_LEN] {
    let id = match option_env!("VIP_BUILD_ID") {
        Some(id) => id.as_bytes(),
        None => b"unknown",
    };
    let mut out = [0u8; BUILD_ID_LEN];
    let mut i = 0;
    // The last byte stays NUL.
    while i < id.len() && i < BUILD_ID_LEN - 1 {
        out[i] = id[i];
        i += 1;
    }
    out
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
