//! The reference classifier for the differential test: vip's documented rules,
//! written on top of etherparse's header slices, sharing no code with
//! vip-ebpf. Given a config and a frame it says what the datapath must do.

use std::net::IpAddr;

use etherparse::{
    EtherType, Ethernet2HeaderSlice, IpAuthHeaderSlice, IpNumber, Ipv4HeaderSlice,
    Ipv6FragmentHeaderSlice, Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, SingleVlanHeaderSlice,
    TcpHeaderSlice, UdpHeaderSlice,
};
use vip_userspace::config::{Config, Rule};

/// Which counter a frame lands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Accepted { range: usize, vip: IpAddr },
    Dropped { range: usize, vip: IpAddr },
    NonVip,
    Malformed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub drop: bool,
    pub key: Key,
    /// Also counted as a later fragment let through.
    pub fragment: bool,
}

enum Transport {
    Ports { proto: u8, port: u16 },
    Icmp { icmp_type: u8, code: u8 },
    LaterFragment { proto: u8 },
    Other,
}

const MAX_EXT_HEADERS: usize = 6;

fn plain(key: Key) -> Expected {
    Expected {
        drop: false,
        key,
        fragment: false,
    }
}

pub fn classify(config: &Config, frame: &[u8]) -> Expected {
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(frame) else {
        return plain(Key::Malformed);
    };
    let mut ether_type = eth.ether_type();
    let mut rest = &frame[eth.slice().len()..];
    for _ in 0..2 {
        if ether_type != EtherType::VLAN_TAGGED_FRAME && ether_type != EtherType::PROVIDER_BRIDGING
        {
            break;
        }
        let Ok(tag) = SingleVlanHeaderSlice::from_slice(rest) else {
            return plain(Key::Malformed);
        };
        ether_type = tag.ether_type();
        rest = &rest[tag.slice().len()..];
    }
    let (dst, next, l4, later, v6) = match ether_type {
        EtherType::IPV4 => {
            let Ok(ip) = Ipv4HeaderSlice::from_slice(rest) else {
                return plain(Key::Malformed);
            };
            let later = ip.fragments_offset().value() != 0;
            (
                IpAddr::V4(ip.destination_addr()),
                ip.protocol().0,
                &rest[ip.slice().len()..],
                later,
                false,
            )
        }
        EtherType::IPV6 => {
            let Ok(ip) = Ipv6HeaderSlice::from_slice(rest) else {
                return plain(Key::Malformed);
            };
            (
                IpAddr::V6(ip.destination_addr()),
                ip.next_header().0,
                &rest[ip.slice().len()..],
                false,
                true,
            )
        }
        _ => return plain(Key::NonVip),
    };
    // The most specific range holding the address judges and counts it.
    let Some(range) = config
        .ranges
        .iter()
        .enumerate()
        .filter(|(_, r)| r.cidr.contains(&dst))
        .max_by_key(|(_, r)| r.cidr.prefix_len())
        .map(|(index, _)| index)
    else {
        return plain(Key::NonVip);
    };
    // A range without an allow list: nothing past the IP header is read.
    let Some(allow) = config.ranges[range].allow.as_ref() else {
        return plain(Key::Accepted { range, vip: dst });
    };
    let Some(transport) = transport(next, l4, later, v6) else {
        return Expected {
            drop: true,
            key: Key::Malformed,
            fragment: false,
        };
    };
    let accept = allows(&allow.rules, &transport, v6);
    Expected {
        drop: !accept,
        key: if accept {
            Key::Accepted { range, vip: dst }
        } else {
            Key::Dropped { range, vip: dst }
        },
        fragment: accept && matches!(transport, Transport::LaterFragment { .. }),
    }
}

fn transport(mut next: u8, mut rest: &[u8], mut later: bool, v6: bool) -> Option<Transport> {
    if v6 {
        let mut walked = 0;
        while walked < MAX_EXT_HEADERS {
            let len = match IpNumber(next) {
                IpNumber::IPV6_HEADER_HOP_BY_HOP
                | IpNumber::IPV6_ROUTE_HEADER
                | IpNumber::IPV6_DESTINATION_OPTIONS => {
                    let ext = Ipv6RawExtHeaderSlice::from_slice(rest).ok()?;
                    next = ext.next_header().0;
                    ext.slice().len()
                }
                IpNumber::IPV6_FRAGMENTATION_HEADER => {
                    let frag = Ipv6FragmentHeaderSlice::from_slice(rest).ok()?;
                    later = frag.fragment_offset().value() != 0;
                    next = frag.next_header().0;
                    frag.slice().len()
                }
                IpNumber::AUTHENTICATION_HEADER => {
                    let auth = IpAuthHeaderSlice::from_slice(rest).ok()?;
                    next = auth.next_header().0;
                    auth.slice().len()
                }
                _ => break,
            };
            rest = &rest[len..];
            walked += 1;
        }
        let extension = matches!(next, 0 | 43 | 44 | 51 | 60);
        if walked == MAX_EXT_HEADERS && extension {
            return None;
        }
    }
    if later {
        return Some(Transport::LaterFragment { proto: next });
    }
    match IpNumber(next) {
        IpNumber::TCP => {
            let tcp = TcpHeaderSlice::from_slice(rest).ok()?;
            Some(Transport::Ports {
                proto: 6,
                port: tcp.destination_port(),
            })
        }
        IpNumber::UDP => {
            let udp = UdpHeaderSlice::from_slice(rest).ok()?;
            Some(Transport::Ports {
                proto: 17,
                port: udp.destination_port(),
            })
        }
        // vip reads the 8-byte ICMP header only (etherparse also checks the
        // length of some message types).
        IpNumber::ICMP if !v6 => (rest.len() >= 8).then(|| Transport::Icmp {
            icmp_type: rest[0],
            code: rest[1],
        }),
        IpNumber::IPV6_ICMP if v6 => (rest.len() >= 8).then(|| Transport::Icmp {
            icmp_type: rest[0],
            code: rest[1],
        }),
        _ => Some(Transport::Other),
    }
}

fn allows(rules: &[Rule], transport: &Transport, v6: bool) -> bool {
    let icmp = rules.contains(&Rule::Icmp);
    let port_rule = |proto: u8, port: u16| {
        rules.iter().any(|rule| match *rule {
            Rule::Tcp { first, last } => proto == 6 && (first..=last).contains(&port),
            Rule::Udp { first, last } => proto == 17 && (first..=last).contains(&port),
            Rule::Icmp => false,
        })
    };
    match *transport {
        Transport::Ports { proto, port } => port_rule(proto, port),
        Transport::Icmp { icmp_type, code } => {
            let path_mtu = if v6 {
                icmp_type == 2
            } else {
                icmp_type == 3 && code == 4
            };
            let listed = if v6 {
                [128, 129, 1, 2, 3].contains(&icmp_type)
            } else {
                [8, 0, 3, 11].contains(&icmp_type)
            };
            path_mtu || (icmp && listed)
        }
        Transport::LaterFragment { proto } => match proto {
            1 | 58 => icmp,
            6 => rules.iter().any(|r| matches!(r, Rule::Tcp { .. })),
            17 => rules.iter().any(|r| matches!(r, Rule::Udp { .. })),
            _ => false,
        },
        Transport::Other => false,
    }
}
