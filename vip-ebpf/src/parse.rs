//! Ethernet / VLAN / IPv4 / IPv6 parsing down to the destination address, and,
//! only when a range's policy needs it, on to the transport header.
//!
//! Header structs hold byte arrays only, so they have alignment 1 and the
//! byte order of every multi-byte field is visible at the read.

use vip_common::{VipAddr, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use crate::cursor::{check_len, ptr_at, read_at, PacketBuf, Truncated};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
/// The first byte of an IPv4 header without options: version 4, IHL 5.
const IPV4_NO_OPTIONS: u8 = 0x45;
/// IPv4 "more fragments" flag, in the fragment offset field.
const IPV4_MF: u16 = 0x2000;
/// IPv4 fragment offset, in the fragment offset field.
const IPV4_FRAG_OFFSET: u16 = 0x1fff;
const IPV6_HLEN: usize = 40;
const IPV6_DST_OFFSET: usize = 24;
const TCP_MIN_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
/// Extension headers walked before giving up on finding the transport header.
const IPV6_MAX_EXT_HEADERS: usize = 6;

const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;

#[repr(C)]
#[derive(Clone, Copy)]
struct EthHdr {
    _dst_mac: [u8; 6],
    _src_mac: [u8; 6],
    ethertype_be: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct VlanTag {
    tci_be: [u8; 2],
    inner_ethertype_be: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Hdr {
    version_ihl: u8,
    _tos: u8,
    _total_len_be: [u8; 2],
    _id_be: [u8; 2],
    frag_off_be: [u8; 2],
    _ttl: u8,
    proto: u8,
    _csum_be: [u8; 2],
    _src_be: [u8; 4],
    dst_be: [u8; 4],
}

/// Where a frame is going, as far as vip cares.
pub enum Destination {
    V4 { addr_be: [u8; 4] },
    V6 { vip: VipAddr },
}

/// Where a packet's IP header is: all that the lookup leaves for later. What
/// lies beyond the header ([`Beyond`]) is read again from the packet only when
/// an allow list or a tunnel needs it, so that nothing of it is carried (in
/// registers or spilled to the stack) through the map lookups of a hit.
#[derive(Clone, Copy)]
pub struct Next {
    /// Where the IP header starts: the length of the headers before it.
    pub header_offset: usize,
    pub ipv6: bool,
}

pub struct L3 {
    pub dst: Destination,
    pub next: Next,
}

/// What the IP header says of what follows it: what [`transport`] and a
/// tunnel's decapsulation need.
#[derive(Clone, Copy)]
pub struct Beyond {
    /// IPv4 protocol, or the IPv6 header's next header.
    pub proto: u8,
    /// Where the header after the IP header starts.
    pub offset: usize,
    /// IPv4 only: the fragment offset is not zero.
    pub later_fragment: bool,
    /// IPv4 only: a fragment, first or later (MF set or a fragment offset).
    pub fragment: bool,
}

/// What a policy looks at.
pub enum Transport {
    /// TCP or UDP with its destination port (host order).
    Ports { proto: u8, dst_port: u16 },
    /// ICMP under IPv4, ICMPv6 under IPv6.
    Icmp { icmp_type: u8, icmp_code: u8 },
    /// A fragment other than the first: no transport header in it.
    LaterFragment { proto: u8 },
    /// Any other protocol.
    Other,
}

/// A header is cut short, or an IP header has a bad version or IHL.
pub struct Malformed;

impl From<Truncated> for Malformed {
    #[inline(always)]
    fn from(_: Truncated) -> Self {
        Malformed
    }
}

/// An ethertype as the frame holds it (network order), compared with constants
/// put in that order at compile time, so a packet pays no byte swap for it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct EthertypeBe(u16);

impl EthertypeBe {
    const fn of(host: u16) -> Self {
        EthertypeBe(u16::from_ne_bytes(host.to_be_bytes()))
    }

    #[inline(always)]
    fn read(bytes: [u8; 2]) -> Self {
        EthertypeBe(u16::from_ne_bytes(bytes))
    }
}

const IPV4_BE: EthertypeBe = EthertypeBe::of(ETH_P_IPV4);
const IPV6_BE: EthertypeBe = EthertypeBe::of(ETH_P_IPV6);
const VLAN_8021Q_BE: EthertypeBe = EthertypeBe::of(ETH_P_8021Q);
const VLAN_8021AD_BE: EthertypeBe = EthertypeBe::of(ETH_P_8021AD);

#[inline(always)]
fn is_vlan(ethertype: EthertypeBe) -> bool {
    ethertype == VLAN_8021Q_BE || ethertype == VLAN_8021AD_BE
}

/// Parses up to two VLAN tags (802.1Q or 802.1ad, in any order), then IPv4 or IPv6
/// down to the destination; `None` for a frame that is not IP (ARP, LLDP, a
/// third VLAN tag, ...).
#[inline(always)]
pub fn network<B: PacketBuf>(buf: &B) -> Result<Option<L3>, Malformed> {
    let eth: EthHdr = read_at(buf, 0)?;
    let mut ethertype = EthertypeBe::read(eth.ethertype_be);
    // The common frame first: one compare, not the VLAN checks before it.
    if ethertype == IPV4_BE {
        return ipv4(buf, ETH_HLEN).map(Some);
    }
    let mut offset = ETH_HLEN;
    for _ in 0..2 {
        if !is_vlan(ethertype) {
            break;
        }
        let tag: VlanTag = read_at(buf, offset)?;
        ethertype = EthertypeBe::read(tag.inner_ethertype_be);
        // Untagged frames keep the constant 14 (and pay nothing); tagged ones
        // go on as one verifier state for 18 and 22.
        offset = unpinned(offset + VLAN_HLEN, tag.tci_be[0], L2_OFFSET_MASK);
    }
    match ethertype {
        IPV4_BE => ipv4(buf, offset).map(Some),
        IPV6_BE => ipv6(buf, offset).map(Some),
        _ => Ok(None),
    }
}

/// An IPv4 header at `offset` (after the link layer, or inside a tunnel).
#[inline(always)]
pub fn ipv4<B: PacketBuf>(buf: &B, offset: usize) -> Result<L3, Malformed> {
    let ip: Ipv4Hdr = read_at(buf, offset)?;
    ipv4_header_len(buf, offset, ip.version_ihl)?;
    Ok(L3 {
        dst: Destination::V4 { addr_be: ip.dst_be },
        next: Next {
            header_offset: offset,
            ipv6: false,
        },
    })
}

/// The length of an IPv4 header at `offset` whose first byte is `version_ihl`,
/// checked: version 4, IHL at least 5, options inside the packet. The caller
/// has read the 20 bytes of a header without options.
#[inline(always)]
fn ipv4_header_len<B: PacketBuf>(
    buf: &B,
    offset: usize,
    version_ihl: u8,
) -> Result<usize, Malformed> {
    // Almost every packet has no options: one compare.
    if version_ihl == IPV4_NO_OPTIONS {
        return Ok(IPV4_MIN_HLEN);
    }
    #[cfg(feature = "bench")]
    crate::bench::layout_pad();
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < IPV4_MIN_HLEN {
        return Err(Malformed);
    }
    check_len(buf, offset, header_len)?; // options cut short
    Ok(header_len)
}

/// An IPv6 header at `offset` (after the link layer, or inside a tunnel).
#[inline(always)]
pub fn ipv6<B: PacketBuf>(buf: &B, offset: usize) -> Result<L3, Malformed> {
    let header = ptr_at::<[u8; IPV6_HLEN], B>(buf, offset)?.cast::<u8>();
    // SAFETY: all reads are inside the 40 bytes ptr_at checked. The destination
    // is read as two words (one load each) rather than sixteen bytes.
    let (version, dst) = unsafe {
        let dst = header.add(IPV6_DST_OFFSET).cast::<u64>();
        (
            header.read(),
            [dst.read_unaligned(), dst.add(1).read_unaligned()],
        )
    };
    if version >> 4 != 6 {
        return Err(Malformed);
    }
    Ok(L3 {
        dst: Destination::V6 {
            vip: VipAddr::from_v6_words(dst),
        },
        next: Next {
            header_offset: offset,
            ipv6: true,
        },
    })
}

/// What the IP header at `next` says of what follows it, read again from the
/// packet (which [`network`], [`ipv4`] or [`ipv6`] checked).
#[inline(always)]
pub fn beyond<B: PacketBuf>(buf: &B, next: Next) -> Result<Beyond, Malformed> {
    if next.ipv6 {
        let head: [u8; 8] = read_at(buf, next.header_offset)?;
        return Ok(Beyond {
            proto: head[6],
            offset: next.header_offset + IPV6_HLEN,
            later_fragment: false,
            fragment: false,
        });
    }
    let ip: Ipv4Hdr = read_at(buf, next.header_offset)?;
    let header_len = ipv4_header_len(buf, next.header_offset, ip.version_ihl)?;
    let frag_off = u16::from_be_bytes(ip.frag_off_be);
    Ok(Beyond {
        proto: ip.proto,
        offset: next.header_offset + header_len,
        later_fragment: frag_off & IPV4_FRAG_OFFSET != 0,
        fragment: frag_off & (IPV4_MF | IPV4_FRAG_OFFSET) != 0,
    })
}

/// Walks IPv6 extension headers (at most `IPV6_MAX_EXT_HEADERS`), then reads what
/// a policy needs from the transport header.
#[inline(always)]
pub fn transport<B: PacketBuf>(buf: &B, next: Next) -> Result<Transport, Malformed> {
    let beyond = beyond(buf, next)?;
    let mut proto = beyond.proto;
    let mut offset = beyond.offset;
    let mut later_fragment = beyond.later_fragment;
    if next.ipv6 {
        let mut walked = 0;
        while walked < IPV6_MAX_EXT_HEADERS && is_extension(proto) {
            let head: [u8; 4] = read_at(buf, offset)?;
            offset = unpinned(offset, head[0], WALK_OFFSET_MASK);
            let len = match proto {
                NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => (usize::from(head[1]) + 1) * 8,
                // RFC 4302: the fixed part alone is 12 bytes (payload length 1).
                NEXTHDR_AUTH if head[1] == 0 => return Err(Malformed),
                NEXTHDR_AUTH => (usize::from(head[1]) + 2) * 4,
                NEXTHDR_FRAGMENT => {
                    let frag_offset = u16::from_be_bytes([head[2], head[3]]) >> 3;
                    later_fragment = frag_offset != 0;
                    8
                }
                _ => break,
            };
            check_len(buf, offset, len)?;
            proto = head[0];
            offset += len;
            walked += 1;
        }
        if walked == IPV6_MAX_EXT_HEADERS && is_extension(proto) {
            return Err(Malformed); // more headers than vip walks: no transport header
        }
    }
    if later_fragment {
        return Ok(Transport::LaterFragment { proto });
    }
    match proto {
        IPPROTO_TCP => {
            let head: [u8; TCP_MIN_HLEN] = read_at(buf, offset)?;
            let header_len = usize::from(head[12] >> 4) * 4;
            if header_len < TCP_MIN_HLEN {
                return Err(Malformed); // data offset below 5
            }
            check_len(buf, offset, header_len)?; // options cut short
            Ok(Transport::Ports {
                proto,
                dst_port: u16::from_be_bytes([head[2], head[3]]),
            })
        }
        IPPROTO_UDP => {
            let head: [u8; UDP_HLEN] = read_at(buf, offset)?;
            Ok(Transport::Ports {
                proto,
                dst_port: u16::from_be_bytes([head[2], head[3]]),
            })
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 if (proto == IPPROTO_ICMPV6) == next.ipv6 => {
            let head: [u8; 8] = read_at(buf, offset)?;
            Ok(Transport::Icmp {
                icmp_type: head[0],
                icmp_code: head[1],
            })
        }
        _ => Ok(Transport::Other),
    }
}

/// At least the largest offset the IP header can start at: two VLAN tags.
const L2_OFFSET_MASK: usize = 0x1f;
const _: () =
    assert!(ETH_HLEN + 2 * VLAN_HLEN <= L2_OFFSET_MASK && (L2_OFFSET_MASK + 1).is_power_of_two());

/// The most that tunnel headers can put before an inner IP header: an IPv4
/// header with options (60), UDP, and GUE's 4 bytes with 31 words of options.
const LARGEST_TUNNEL_HEADERS: usize = 60 + UDP_HLEN + 4 + 31 * 4;

/// Above the largest offset an extension header can start at: two VLAN
/// tags, a tunnel's headers, the inner IPv6 header, and five extension
/// headers of the largest size (2,048 bytes) before the sixth.
const WALK_OFFSET_MASK: usize = 0x7fff;
const _: () = assert!(
    ETH_HLEN + 2 * VLAN_HLEN + LARGEST_TUNNEL_HEADERS + IPV6_HLEN + 5 * 2048 < WALK_OFFSET_MASK
        && (WALK_OFFSET_MASK + 1).is_power_of_two()
);

/// `offset` as it is, but as a value the verifier knows only to be at most
/// `mask` (a power of two less one, at least `offset`). Where offsets differ
/// from path to path (each VLAN tag count; each kind and order of extension
/// header), the verifier checks all that follows once per offset; made one
/// value, the paths meet. vip_xdp: 217k verified instructions before, 53k
/// after (6.18; see NOTES.md "Decapsulation and the verifier"). `noise` is
/// any byte read from the packet: subtracted from itself it is zero, which
/// the verifier cannot see. About four instructions, only on the paths that
/// call it.
#[inline(always)]
pub fn unpinned(offset: usize, noise: u8, mask: usize) -> usize {
    let mut zero = usize::from(noise);
    // SAFETY: one subtraction between registers; nothing is read or written.
    unsafe {
        core::arch::asm!("{0} -= {0}", inout(reg) zero, options(pure, nomem, nostack));
    }
    (offset + zero) & mask
}

#[inline(always)]
fn is_extension(proto: u8) -> bool {
    matches!(
        proto,
        NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_FRAGMENT | NEXTHDR_AUTH | NEXTHDR_DEST
    )
}
