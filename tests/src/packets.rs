//! Frame builders: the one place the fixtures, the netns tests, the demo and the
//! bench get their packets from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{IpHeaders, Ipv4Header, PacketBuilder, VlanId};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
/// Source addresses, from the link range 198.18.0.0/15.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Udp {
        dst_port: u16,
    },
    Tcp {
        dst_port: u16,
    },
    /// ICMP under IPv4, ICMPv6 under IPv6.
    Icmp {
        icmp_type: u8,
        code: u8,
    },
}

/// An IPv6 extension header to put between the IPv6 header and the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    HopByHop,
    Routing,
    /// Fragment offset in 8-byte units, and the more-fragments flag.
    Fragment {
        offset: u16,
        more: bool,
    },
    DestOpts,
    Auth,
}

impl Ext {
    pub fn number(self) -> u8 {
        match self {
            Ext::HopByHop => 0,
            Ext::Routing => 43,
            Ext::Fragment { .. } => 44,
            Ext::DestOpts => 60,
            Ext::Auth => 51,
        }
    }

    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            Ext::HopByHop | Ext::DestOpts => vec![next, 0, 1, 4, 0, 0, 0, 0], // PadN
            Ext::Routing => vec![next, 0, 0, 0, 0, 0, 0, 0],
            Ext::Fragment { offset, more } => {
                let field = (offset << 3) | u16::from(more);
                let [hi, lo] = field.to_be_bytes();
                vec![next, 0, hi, lo, 0, 0, 0, 1]
            }
            // AH: payload length is the header's length in 4-byte words, minus 2.
            Ext::Auth => vec![next, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
        }
    }
}

/// A frame to build: optional VLAN tags (TPID, VLAN id), destination, L4 and payload.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub vlans: Vec<(u16, u16)>,
    pub dst: IpAddr,
    pub l4: L4,
    pub payload_len: usize,
    /// IPv4 options bytes (a multiple of 4, at most 40).
    pub ipv4_options: Vec<u8>,
    /// IPv4: fragment offset in 8-byte units and the more-fragments flag.
    pub ipv4_fragment: Option<(u16, bool)>,
    /// IPv6 extension headers, in order.
    pub ipv6_ext: Vec<Ext>,
}

impl FrameSpec {
    pub fn udp(dst: impl Into<IpAddr>, dst_port: u16) -> FrameSpec {
        FrameSpec {
            vlans: Vec::new(),
            dst: dst.into(),
            l4: L4::Udp { dst_port },
            payload_len: 0,
            ipv4_options: Vec::new(),
            ipv4_fragment: None,
            ipv6_ext: Vec::new(),
        }
    }

    pub fn icmp(dst: impl Into<IpAddr>, icmp_type: u8, code: u8) -> FrameSpec {
        FrameSpec {
            l4: L4::Icmp { icmp_type, code },
            ..FrameSpec::udp(dst, 0)
        }
    }

    pub fn ipv4_fragment(mut self, offset: u16, more: bool) -> FrameSpec {
        self.ipv4_fragment = Some((offset, more));
        self
    }

    pub fn ext(mut self, ext: Ext) -> FrameSpec {
        self.ipv6_ext.push(ext);
        self
    }

    pub fn tcp(dst: impl Into<IpAddr>, dst_port: u16) -> FrameSpec {
        FrameSpec {
            l4: L4::Tcp { dst_port },
            ..FrameSpec::udp(dst, 0)
        }
    }

    pub fn vlan(mut self, tpid: u16, vid: u16) -> FrameSpec {
        self.vlans.push((tpid, vid));
        self
    }

    pub fn payload(mut self, len: usize) -> FrameSpec {
        self.payload_len = len;
        self
    }

    pub fn ipv4_options(mut self, options: &[u8]) -> FrameSpec {
        self.ipv4_options = options.to_vec();
        self
    }

    /// Pads the UDP or TCP payload so the whole frame is `len` bytes.
    pub fn frame_len(mut self, len: usize) -> FrameSpec {
        self.payload_len = 0;
        let base = self.build().len();
        self.payload_len = len
            .checked_sub(base)
            .expect("frame_len below the headers' size");
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut frame = self.build_untagged();
        if let Some((offset, more)) = self.ipv4_fragment {
            let field = (offset & 0x1fff) | if more { 0x2000 } else { 0 };
            frame[L3_OFFSET + 6..L3_OFFSET + 8].copy_from_slice(&field.to_be_bytes());
        }
        if !self.ipv6_ext.is_empty() {
            frame = insert_ipv6_ext(frame, &self.ipv6_ext);
        }
        insert_vlan_tags(frame, &self.vlans)
    }

    fn build_untagged(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC);
        let ip = match self.dst {
            IpAddr::V4(dst) => {
                let mut header = Ipv4Header::new(
                    0,
                    64,
                    etherparse::IpNumber::UDP,
                    CLIENT_V4.octets(),
                    dst.octets(),
                )
                .expect("valid IPv4 header");
                header.options = self
                    .ipv4_options
                    .as_slice()
                    .try_into()
                    .expect("IPv4 options: a multiple of 4 bytes, at most 40");
                eth.ip(IpHeaders::Ipv4(header, Default::default()))
            }
            IpAddr::V6(dst) => {
                assert!(
                    self.ipv4_options.is_empty(),
                    "IPv4 options on an IPv6 frame"
                );
                eth.ipv6(CLIENT_V6.octets(), dst.octets(), 64)
            }
        };
        let payload = vec![0xa5u8; self.payload_len];
        let mut out = Vec::new();
        match self.l4 {
            L4::Udp { dst_port } => ip.udp(40000, dst_port).write(&mut out, &payload),
            L4::Tcp { dst_port } => ip
                .tcp(40000, dst_port, 1, 64240)
                .syn()
                .write(&mut out, &payload),
            L4::Icmp { icmp_type, code } if self.dst.is_ipv4() => ip
                .icmpv4_raw(icmp_type, code, [0, 0, 0, 1])
                .write(&mut out, &payload),
            L4::Icmp { icmp_type, code } => ip
                .icmpv6_raw(icmp_type, code, [0, 0, 0, 1])
                .write(&mut out, &payload),
        }
        .expect("frame serializes");
        out
    }
}

/// Inserts IPv6 extension headers after the IPv6 header of an untagged frame,
/// chaining next-header fields and fixing the payload length.
fn insert_ipv6_ext(frame: Vec<u8>, exts: &[Ext]) -> Vec<u8> {
    let l4_start = L3_OFFSET + 40;
    let transport = frame[L3_OFFSET + 6];
    let mut chain = Vec::new();
    for (i, ext) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(transport, |e| e.number());
        chain.extend(ext.bytes(next));
    }
    let mut out = frame[..l4_start].to_vec();
    out[L3_OFFSET + 6] = exts[0].number();
    let payload = (frame.len() - l4_start + chain.len()) as u16;
    out[L3_OFFSET + 4..L3_OFFSET + 6].copy_from_slice(&payload.to_be_bytes());
    out.extend(chain);
    out.extend_from_slice(&frame[l4_start..]);
    out
}

/// Inserts 802.1Q/802.1ad tags after the MAC addresses, outermost first.
fn insert_vlan_tags(frame: Vec<u8>, vlans: &[(u16, u16)]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for &(tpid, vid) in vlans {
        VlanId::try_new(vid).expect("VLAN id below 4096");
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// An ARP request frame (not IP).
pub fn arp_request() -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&[0x08, 0x06]);
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&CLIENT_V4.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&[198, 18, 0, 2]);
    frame
}

/// Offset of the IP header in an untagged frame.
pub const L3_OFFSET: usize = 14;
