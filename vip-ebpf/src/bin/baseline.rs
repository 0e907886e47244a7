//! Programs for `cargo xtask bench` and the tests, kept out of the production
//! object: the cheapest XDP programs there are (the baselines), the traffic
//! generator of the end-to-end lab, and the tunnel director of the decap lab.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L4_UDP, TC_ACT_OK,
    },
    helpers::bpf_get_smp_processor_id,
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use vip_common::{
    port_bitmap_index, sparse_hash_multiply, Counter, FloorSlot, PortBitmap, SparseSlot, Verdicts,
    VipAddr, FLOOR_HASHED_SLOTS_PER_CPU, FLOOR_LINE_SPREAD, FLOOR_PREFIX_V6, FLOOR_V4_PREFIX,
    FLOOR_V4_VIPS, FLOOR_V6_MULTIPLIERS, FLOOR_V6_SLOTS_PER_CPU, FLOOR_VIPS, IPPROTO_UDP,
    SPARSE_PROBES,
};

#[xdp]
pub fn baseline_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn baseline_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// XDP_DROP after reading what any classifier reads first, the ethertype and
/// the IPv4 destination: end to end, bare XDP_DROP never touches the frame, so
/// this tells what the first read of a frame costs on its own.
#[xdp]
pub fn baseline_read_drop(ctx: XdpContext) -> u32 {
    // The verdict depends on the address, so the compiler keeps its read.
    match ipv4_destination(&ctx) {
        Some(dst) if dst != [0; 4] => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// The destination of an IPv4 frame without VLAN tags (read straight from
/// the frame: no IHL or version check).
#[inline(always)]
fn ipv4_destination(ctx: &XdpContext) -> Option<[u8; 4]> {
    destination(ctx, [0x08, 0x00], 14 + 16)
}

/// The destination of an IPv6 frame without VLAN tags, as the two words it
/// is in the frame (compared as words: a byte-slice comparison would call
/// memcmp).
#[inline(always)]
fn ipv6_destination(ctx: &XdpContext) -> Option<[u64; 2]> {
    destination(ctx, [0x86, 0xdd], 14 + 24)
}

/// The `T` at `offset` of a frame whose ethertype (no VLAN tags) is `ethertype`.
#[inline(always)]
fn destination<T: Copy>(ctx: &XdpContext, ethertype: [u8; 2], offset: usize) -> Option<T> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + offset + size_of::<T>() > end {
        return None;
    }
    let frame = start as *const u8;
    // SAFETY: inside the frame (checked above).
    let (found, dst) = unsafe {
        (
            core::ptr::read_unaligned(frame.add(12) as *const u16),
            core::ptr::read_unaligned(frame.add(offset) as *const T),
        )
    };
    (found == u16::from_ne_bytes(ethertype)).then_some(dst)
}

/// The empty program plus the one helper call decapsulation cannot do without:
/// what that call costs on the machine, for BENCHMARKS.md.
#[xdp]
pub fn baseline_adjust_head(ctx: XdpContext) -> u32 {
    // SAFETY: moving the frame's start by nothing.
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, 0) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    xdp_action::XDP_PASS
}

/// The floor's per-VIP counters: `FLOOR_VIPS` slots per CPU (userspace sizes
/// it for the CPUs there are).
#[map]
static FLOOR_SLOTS: Array<Verdicts> = Array::with_max_entries(1, 0);

const PREFIX_HI: [u8; 8] = split(0);
const PREFIX_LO: [u8; 8] = split(8);
/// Bytes 8 to 13 of the address: the prefix's; 14 and 15 are the index.
const LOW_MASK: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0];

/// Eight bytes of the floor's prefix from `at`, zero past its 14.
const fn split(at: usize) -> [u8; 8] {
    let mut out = [0; 8];
    let mut i = 0;
    while i < 8 && at + i < FLOOR_PREFIX_V6.len() {
        out[i] = FLOOR_PREFIX_V6[at + i];
        i += 1;
    }
    out
}

/// The floor of per-VIP accounting (issue 19): the least an XDP program can do
/// to count packets and bytes per destination exactly. It checks the address
/// is in the synthetic set (`FLOOR_PREFIX_V6`/112), takes the slot the last 16
/// bits name in this CPU's stretch, counts and drops. Anything else passes.
#[xdp]
pub fn floor_per_vip(ctx: XdpContext) -> u32 {
    let Some(words) = ipv6_destination(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let prefix_lo = words[1] & u64::from_ne_bytes(LOW_MASK);
    if words[0] != u64::from_ne_bytes(PREFIX_HI) || prefix_lo != u64::from_ne_bytes(PREFIX_LO) {
        return xdp_action::XDP_PASS;
    }
    let low = words[1].to_ne_bytes();
    let dst = [low[6], low[7]];
    let vip = u32::from(u16::from_be_bytes(dst));
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(slot) = FLOOR_SLOTS.get_ptr_mut(cpu * FLOOR_VIPS + vip) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's slot; XDP programs do not nest on one CPU.
    unsafe { (*slot).side(true).add((ctx.data_end() - ctx.data()) as u64) };
    xdp_action::XDP_DROP
}

/// The hashed floors' slots (`FLOOR_HASHED_SLOTS_PER_CPU` per CPU, times
/// `FLOOR_LINE_SPREAD` for the line variant; userspace sizes it).
#[map]
static FLOOR_HASHED_SLOTS: Array<FloorSlot> = Array::with_max_entries(1, 0);

/// The hashed floors' packets to addresses that found no slot within
/// `SPARSE_PROBES`, as vip counts them for their range.
#[map]
static FLOOR_HASHED_OVERFLOW: PerCpuArray<Counter> = PerCpuArray::with_max_entries(1, 0);

/// The per-VIP floor in the shape of vip's table with 32-byte slots: the
/// address's multiply hash, a linear probe of this CPU's table at load one
/// half, the whole address compared, a free slot taken, the packet counted
/// (in one overflow counter when every probed slot holds another address),
/// XDP_DROP. What a hashed table whose slot holds only the address and one
/// counter costs.
#[xdp]
pub fn floor_per_vip_hashed(ctx: XdpContext) -> u32 {
    floor_hashed::<1>(&ctx)
}

/// The same with each slot alone in a 64-byte line, as vip's `SparseSlot` of
/// layouts 11 and older (layout 12's hot half is 32 bytes, the shape of
/// `floor_per_vip_hashed`).
#[xdp]
pub fn floor_per_vip_hashed_line(ctx: XdpContext) -> u32 {
    floor_hashed::<FLOOR_LINE_SPREAD>(&ctx)
}

#[inline(always)]
fn floor_hashed<const SPREAD: u32>(ctx: &XdpContext) -> u32 {
    let Some(words) = ipv6_destination(ctx) else {
        return xdp_action::XDP_PASS;
    };
    let vip = VipAddr::from_v6_words(words);
    // SAFETY: a static, read volatile like vip's loader constants.
    let multipliers = unsafe { core::ptr::read_volatile(&FLOOR_V6_HASH) };
    let hash = sparse_hash_multiply(&vip, &multipliers);
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let len = (ctx.data_end() - ctx.data()) as u64;
    for probe in 0..SPARSE_PROBES {
        let at = hash.wrapping_add(probe) & (FLOOR_HASHED_SLOTS_PER_CPU - 1);
        let Some(slot) =
            FLOOR_HASHED_SLOTS.get_ptr_mut((cpu * FLOOR_HASHED_SLOTS_PER_CPU + at) * SPREAD)
        else {
            return xdp_action::XDP_PASS;
        };
        // SAFETY: this CPU's slot; XDP programs do not nest on one CPU.
        let slot = unsafe { &mut *slot };
        if slot.vip == VipAddr::default() {
            slot.vip = vip;
        } else if slot.vip != vip {
            continue;
        }
        slot.dropped.add(len);
        return xdp_action::XDP_DROP;
    }
    if let Some(overflow) = FLOOR_HASHED_OVERFLOW.get_ptr_mut(0) {
        // SAFETY: this CPU's entry; XDP programs do not nest on one CPU.
        unsafe { (*overflow).add(len) };
    }
    xdp_action::XDP_DROP
}

/// The IPv4 floor's per-VIP counters: `FLOOR_V4_VIPS` slots per CPU.
#[map]
static FLOOR_V4_SLOTS: Array<Verdicts> = Array::with_max_entries(1, 0);

/// The floor of an IPv4 hit under BPF_PROG_TEST_RUN (issue 19): the least an
/// XDP program can do to count a packet per destination exactly. Ethernet and
/// IPv4 destination in the frame, ethertype IPv4, destination in
/// `FLOOR_V4_PREFIX`/24, this CPU's slot of the last octet, packets and bytes
/// counted, XDP_PASS. No VLANs, no header length check, one fixed /24.
#[xdp]
pub fn floor_v4_count(ctx: XdpContext) -> u32 {
    let Some(dst) = floor_v4_vip(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    floor_v4_counted(&ctx, dst, false);
    xdp_action::XDP_PASS
}

/// The IPv4 destination, if it is in `FLOOR_V4_PREFIX`/24.
#[inline(always)]
fn floor_v4_vip(ctx: &XdpContext) -> Option<[u8; 4]> {
    let dst = ipv4_destination(ctx)?;
    let [a, b, c] = FLOOR_V4_PREFIX;
    let prefix = u32::from_ne_bytes([0xff, 0xff, 0xff, 0]);
    (u32::from_ne_bytes(dst) & prefix == u32::from_ne_bytes([a, b, c, 0])).then_some(dst)
}

/// Counts the frame in this CPU's slot of `dst`'s last octet, on the dropped
/// side if `drop`.
#[inline(always)]
fn floor_v4_counted(ctx: &XdpContext, dst: [u8; 4], drop: bool) {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if let Some(slot) = FLOOR_V4_SLOTS.get_ptr_mut(cpu * FLOOR_V4_VIPS + u32::from(dst[3])) {
        // SAFETY: this CPU's slot; XDP programs do not nest on one CPU.
        unsafe { (*slot).side(drop).add((ctx.data_end() - ctx.data()) as u64) };
    }
}

/// The allowed ports of the port floor's one list (policy 0): TCP and UDP at
/// `port_bitmap_index(0, udp)`, as in `VIP_PORTS`.
#[map]
static FLOOR_V4_PORTS: Array<PortBitmap> = Array::with_max_entries(2, 0);

/// The floor of a port under an allow list, under BPF_PROG_TEST_RUN (issue
/// 19): the IPv4 floor's address check and slot, plus what any constant-time
/// allow list must do: read the transport header's destination port (straight
/// after a 20-byte IPv4 header) and test its bit in the list's bitmap for the
/// protocol. A port not allowed is counted dropped, XDP_DROP (the denied-port
/// floor); an allowed one is counted accepted, XDP_PASS (the allowed-port
/// floor, compared with `floor_v4_count` on the same frame).
#[xdp]
pub fn floor_v4_port(ctx: XdpContext) -> u32 {
    const PROTO: usize = 14 + 9;
    const DST_PORT: usize = 14 + 20 + 2;
    let Some(dst) = floor_v4_vip(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + DST_PORT + 2 > end {
        return xdp_action::XDP_PASS;
    }
    let frame = start as *const u8;
    // SAFETY: inside the frame (checked above).
    let (proto, port) = unsafe {
        (
            *frame.add(PROTO),
            core::ptr::read_unaligned(frame.add(DST_PORT) as *const [u8; 2]),
        )
    };
    let Some(ports) = FLOOR_V4_PORTS.get(port_bitmap_index(0, proto == IPPROTO_UDP)) else {
        return xdp_action::XDP_PASS;
    };
    if ports.allows(u16::from_be_bytes(port)) {
        floor_v4_counted(&ctx, dst, false);
        return xdp_action::XDP_PASS;
    }
    floor_v4_counted(&ctx, dst, true);
    xdp_action::XDP_DROP
}

/// The IPv6 floor's slots: `FLOOR_V6_SLOTS_PER_CPU` per CPU.
#[map]
static FLOOR_V6_SLOTS: Array<SparseSlot> = Array::with_max_entries(1, 0);

/// `FLOOR_V6_MULTIPLIERS`, in the object's read-only data like vip's drawn
/// multipliers, read the same way.
#[unsafe(no_mangle)]
static FLOOR_V6_HASH: [u64; 4] = FLOOR_V6_MULTIPLIERS;

/// The floor of an IPv6 hit under BPF_PROG_TEST_RUN (issue 19): the least an
/// XDP program can do to count a packet per destination exactly when the
/// destinations are any addresses, which no direct index can place, and
/// nobody outside may choose colliding ones (issue 18): ethertype IPv6, vip's
/// keyed multiply hash of the destination, one slot of this CPU's table (no
/// probing), the whole address compared (the slot taken when free), packets
/// and bytes counted, XDP_PASS. No VLANs, no version check, no range behind
/// the slot.
#[xdp]
pub fn floor_v6_count(ctx: XdpContext) -> u32 {
    // No prefix check: vip finds a known VIP through its slot, without its
    // range, and a check here would let the compiler fold the known high
    // words into the hash.
    let Some(words) = ipv6_destination(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let (start, end) = (ctx.data(), ctx.data_end());
    let vip = VipAddr::from_v6_words(words);
    // SAFETY: a static, read volatile like vip's loader constants.
    let multipliers = unsafe { core::ptr::read_volatile(&FLOOR_V6_HASH) };
    let hash = sparse_hash_multiply(&vip, &multipliers);
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let index = cpu * FLOOR_V6_SLOTS_PER_CPU + (hash & (FLOOR_V6_SLOTS_PER_CPU - 1));
    let Some(slot) = FLOOR_V6_SLOTS.get_ptr_mut(index) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's slot; XDP programs do not nest on one CPU.
    let slot = unsafe { &mut *slot };
    if slot.epoch == 0 {
        slot.vip = vip;
        slot.epoch = 1;
    } else if slot.vip != vip {
        return xdp_action::XDP_PASS;
    }
    slot.verdicts.side(false).add((end - start) as u64);
    xdp_action::XDP_PASS
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

/// `TEST_ENCAP_CONFIG` indices.
const ENCAP_MODE: u32 = 0;
const ENCAP_GUE_PORT: u32 = 1;
/// Modes: off, IPv4 in IPv4, IPv6 in IPv6, GUE variant 1 (outer of the inner's
/// family).
const MODE_IPIP: u32 = 1;
const MODE_IP6IP6: u32 = 2;
const MODE_GUE: u32 = 3;
/// `TEST_ENCAP_ADDRS` indices: outer source and destination, then the prefix of
/// destinations to encapsulate (IPv4: the first 3 bytes; IPv6: the first 8).
const ADDR_SRC_V4: u32 = 0;
const ADDR_DST_V4: u32 = 1;
const ADDR_SRC_V6: u32 = 2;
const ADDR_DST_V6: u32 = 3;
const ADDR_VIPS_V4: u32 = 4;
const ADDR_VIPS_V6: u32 = 5;

#[map]
static TEST_ENCAP_CONFIG: Array<u32> = Array::with_max_entries(2, 0);
#[map]
static TEST_ENCAP_ADDRS: Array<[u8; 16]> = Array::with_max_entries(6, 0);

const ETH_HLEN: usize = 14;
const GUE_SOURCE_PORT: u16 = 40000;

/// The tests' tunnel director (TC egress), Katran-style: packets to the VIP
/// prefix get an outer header (IPv4 in IPv4, IPv6 in IPv6, or GUE variant 1)
/// through `bpf_skb_adjust_room` with the encap flags, so no tunnel device is
/// needed on this kernel. Everything else, and any failure, goes out as it was.
#[classifier]
pub fn test_encap(ctx: TcContext) -> i32 {
    let _ = try_test_encap(&ctx);
    TC_ACT_OK
}

fn config(index: u32) -> u32 {
    TEST_ENCAP_CONFIG.get(index).copied().unwrap_or(0)
}

fn addr(index: u32) -> [u8; 16] {
    TEST_ENCAP_ADDRS.get(index).copied().unwrap_or([0; 16])
}

fn try_test_encap(ctx: &TcContext) -> Result<(), i64> {
    let mode = config(ENCAP_MODE);
    let gue = mode == MODE_GUE;
    let ethertype: [u8; 2] = ctx.load(12)?;
    let inner_len = ctx.len() as usize - ETH_HLEN;
    let gue_len = if gue { 8 } else { 0 };
    let udp = |len: usize| {
        let [sp0, sp1] = GUE_SOURCE_PORT.to_be_bytes();
        let [dp0, dp1] = (config(ENCAP_GUE_PORT) as u16).to_be_bytes();
        let [l0, l1] = (len as u16).to_be_bytes();
        [sp0, sp1, dp0, dp1, l0, l1, 0, 0]
    };
    match u16::from_be_bytes(ethertype) {
        0x0800 if mode == MODE_IPIP || gue => {
            let dst: [u8; 4] = ctx.load(ETH_HLEN + 16)?;
            if dst[..3] != addr(ADDR_VIPS_V4)[..3] {
                return Ok(());
            }
            let outer_len = 20 + gue_len;
            let flags =
                BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | if gue { BPF_F_ADJ_ROOM_ENCAP_L4_UDP } else { 0 };
            ctx.adjust_room(outer_len as i32, BPF_ADJ_ROOM_MAC, u64::from(flags))?;
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((inner_len + outer_len) as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = if gue { 17 } else { 4 };
            ip[12..16].copy_from_slice(&addr(ADDR_SRC_V4)[..4]);
            ip[16..20].copy_from_slice(&addr(ADDR_DST_V4)[..4]);
            let checksum = ipv4_checksum(&ip);
            ip[10..12].copy_from_slice(&checksum.to_be_bytes());
            ctx.store(ETH_HLEN, &ip, 0)?;
            if gue {
                ctx.store(ETH_HLEN + 20, &udp(inner_len + 8), 0)?;
            }
        }
        0x86dd if mode == MODE_IP6IP6 || gue => {
            let dst: [u8; 8] = ctx.load(ETH_HLEN + 24)?;
            if dst[..] != addr(ADDR_VIPS_V6)[..8] {
                return Ok(());
            }
            let outer_len = 40 + gue_len;
            let flags =
                BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 | if gue { BPF_F_ADJ_ROOM_ENCAP_L4_UDP } else { 0 };
            ctx.adjust_room(outer_len as i32, BPF_ADJ_ROOM_MAC, u64::from(flags))?;
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&((inner_len + gue_len) as u16).to_be_bytes());
            ip[6] = if gue { 17 } else { 41 };
            ip[7] = 64;
            ip[8..24].copy_from_slice(&addr(ADDR_SRC_V6));
            ip[24..40].copy_from_slice(&addr(ADDR_DST_V6));
            ctx.store(ETH_HLEN, &ip, 0)?;
            if gue {
                ctx.store(ETH_HLEN + 40, &udp(inner_len + 8), 0)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn ipv4_checksum(header: &[u8; 20]) -> u16 {
    let mut sum = 0u32;
    for i in 0..10 {
        sum += u32::from(u16::from_be_bytes([header[2 * i], header[2 * i + 1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
