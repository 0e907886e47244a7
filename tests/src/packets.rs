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
    Udp { dst_port: u16 },
    Tcp { dst_port: u16 },
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
}

impl FrameSpec {
    pub fn udp(dst: impl Into<IpAddr>, dst_port: u16) -> FrameSpec {
        FrameSpec {
            vlans: Vec::new(),
            dst: dst.into(),
            l4: L4::Udp { dst_port },
            payload_len: 0,
            ipv4_options: Vec::new(),
        }
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
        let untagged = self.build_untagged();
        insert_vlan_tags(untagged, &self.vlans)
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
        }
        .expect("frame serializes");
        out
    }
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
