//! Ethernet / VLAN / IPv4 / IPv6 parsing down to the destination address.
//!
//! Header structs hold byte arrays only, so they have alignment 1 and the
//! byte order of every multi-byte field is visible at the read.

use vip_common::VipAddr;

use crate::cursor::{check_len, ptr_at, read_at, PacketBuf, Truncated};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;

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
    _tci_be: [u8; 2],
    inner_ethertype_be: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Hdr {
    version_ihl: u8,
    _tos: u8,
    _total_len_be: [u8; 2],
    _id_be: [u8; 2],
    _frag_off_be: [u8; 2],
    _ttl: u8,
    _proto: u8,
    _csum_be: [u8; 2],
    _src_be: [u8; 4],
    dst_be: [u8; 4],
}

const IPV6_HLEN: usize = 40;
const IPV6_DST_OFFSET: usize = 24;

/// Where a frame is going, as far as vip cares.
pub enum Destination {
    V4 {
        addr_be: [u8; 4],
    },
    V6 {
        vip: VipAddr,
    },
    /// Not IPv4 or IPv6 (ARP, LLDP, a third VLAN tag, ...).
    NotIp,
}

/// A header is cut short, or an IP header has a bad version or IHL.
pub struct Malformed;

impl From<Truncated> for Malformed {
    #[inline(always)]
    fn from(_: Truncated) -> Self {
        Malformed
    }
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// Parses up to two VLAN tags (802.1Q or 802.1ad, in any order), then IPv4 or IPv6.
#[inline(always)]
pub fn destination<B: PacketBuf>(buf: &B) -> Result<Destination, Malformed> {
    let eth: EthHdr = read_at(buf, 0)?;
    let mut ethertype = u16::from_be_bytes(eth.ethertype_be);
    let mut offset = ETH_HLEN;
    for _ in 0..2 {
        if !is_vlan(ethertype) {
            break;
        }
        let tag: VlanTag = read_at(buf, offset)?;
        ethertype = u16::from_be_bytes(tag.inner_ethertype_be);
        offset += VLAN_HLEN;
    }
    match ethertype {
        ETH_P_IPV4 => ipv4(buf, offset),
        ETH_P_IPV6 => ipv6(buf, offset),
        _ => Ok(Destination::NotIp),
    }
}

#[inline(always)]
fn ipv4<B: PacketBuf>(buf: &B, offset: usize) -> Result<Destination, Malformed> {
    let ip: Ipv4Hdr = read_at(buf, offset)?;
    let version = ip.version_ihl >> 4;
    let header_len = usize::from(ip.version_ihl & 0x0f) * 4;
    if version != 4 || header_len < IPV4_MIN_HLEN {
        return Err(Malformed);
    }
    check_len(buf, offset, header_len)?; // options cut short
    Ok(Destination::V4 { addr_be: ip.dst_be })
}

#[inline(always)]
fn ipv6<B: PacketBuf>(buf: &B, offset: usize) -> Result<Destination, Malformed> {
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
    Ok(Destination::V6 {
        vip: VipAddr::from_v6_words(dst),
    })
}
