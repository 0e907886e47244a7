//! Tunnelled frames, as a director (LVS-TUN, Katran) sends them to a real
//! server: an untagged inner frame's IP packet wrapped in an outer IP header
//! (and UDP and GUE for GUE), between the same MAC addresses.

use etherparse::{IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, UdpHeader};

/// The real server's address, the outer destination (link range).
pub const OUTER_DST_V4: [u8; 4] = [198, 18, 0, 2];
pub const OUTER_SRC_V4: [u8; 4] = [198, 18, 0, 9];
pub const OUTER_DST_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
];
pub const OUTER_SRC_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
];
pub const DEFAULT_GUE_PORT: u16 = 6080;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// IP in IPv4 (protocol 4 or 41).
    Ipip,
    /// IP in IPv6 (next header 41 or 4).
    Ip6ip6,
    /// GUE variant 0 over IPv4 UDP: a 4-byte GUE header naming the inner protocol.
    GueV0 { port: u16 },
    /// GUE variant 1 over IPv4 UDP: the inner IP header right after UDP (Katran).
    GueV1 { port: u16 },
    /// GUE variant 1 over IPv6 UDP.
    GueV1Over6 { port: u16 },
}

/// Length of the Ethernet header of the untagged frames this wraps.
const ETH_HLEN: usize = 14;

/// `inner`, an untagged Ethernet frame, as the tunnel carries it.
pub fn encapsulate(inner: &[u8], tunnel: Tunnel) -> Vec<u8> {
    let packet = &inner[ETH_HLEN..];
    let inner_proto = match packet[0] >> 4 {
        4 => IpNumber::IPV4,
        6 => IpNumber::IPV6,
        v => panic!("inner IP version {v}"),
    };
    let mut payload = Vec::new();
    let (outer_v6, proto) = match tunnel {
        Tunnel::Ipip => (false, inner_proto),
        Tunnel::Ip6ip6 => (true, inner_proto),
        Tunnel::GueV0 { port } | Tunnel::GueV1 { port } | Tunnel::GueV1Over6 { port } => {
            let mut gue = Vec::new();
            if let Tunnel::GueV0 { .. } = tunnel {
                gue.extend_from_slice(&[0, inner_proto.0, 0, 0]);
            }
            let len = (gue.len() + packet.len()) as u16;
            let udp = UdpHeader {
                source_port: 40000,
                destination_port: port,
                length: UdpHeader::LEN_U16 + len,
                checksum: 0,
            };
            payload.extend_from_slice(&udp.to_bytes());
            payload.extend(gue);
            (matches!(tunnel, Tunnel::GueV1Over6 { .. }), IpNumber::UDP)
        }
    };
    payload.extend_from_slice(packet);
    let mut out = inner[..12].to_vec();
    if outer_v6 {
        out.extend_from_slice(&0x86ddu16.to_be_bytes());
        let ip = Ipv6Header {
            traffic_class: 0,
            flow_label: Ipv6FlowLabel::ZERO,
            payload_length: payload.len() as u16,
            next_header: proto,
            hop_limit: 64,
            source: OUTER_SRC_V6,
            destination: OUTER_DST_V6,
        };
        out.extend_from_slice(&ip.to_bytes());
    } else {
        out.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = Ipv4Header::new(payload.len() as u16, 64, proto, OUTER_SRC_V4, OUTER_DST_V4)
            .expect("outer IPv4 header");
        ip.header_checksum = ip.calc_header_checksum();
        out.extend_from_slice(&ip.to_bytes());
    }
    out.extend(payload);
    out
}
