//! The differential test's packet generator: weighted towards VIP hits, edge
//! addresses and ports, header stacks, fragments and truncations, then mutated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

use crate::packets::{Ext, FrameSpec, ETH_P_8021AD, ETH_P_8021Q};

pub struct Generator {
    rng: StdRng,
    vips: Vec<IpAddr>,
    misses: Vec<IpAddr>,
    ports: Vec<u16>,
}

impl Generator {
    /// `ranges`: the configured CIDRs; `ports`: the allow lists' edges.
    pub fn new(seed: u64, ranges: &[IpNet], ports: &[u16]) -> Generator {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut vips = Vec::new();
        for net in ranges {
            vips.push(net.network());
            vips.push(net.broadcast());
            for _ in 0..64 {
                vips.push(random_in(&mut rng, net));
            }
        }
        let mut misses: Vec<IpAddr> = [
            "198.18.0.1",
            "198.19.255.255",
            "203.0.113.255",
            "2001:db8:ffff::1",
            "2001:db8::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .filter(|a| !ranges.iter().any(|r| r.contains(a)))
        .collect();
        for net in ranges {
            // Just outside each range.
            if let Some(below) = step(net.network(), -1) {
                misses.push(below);
            }
            if let Some(above) = step(net.broadcast(), 1) {
                misses.push(above);
            }
        }
        misses.retain(|a| !ranges.iter().any(|r| r.contains(a)));
        let mut interesting: Vec<u16> = vec![0, 1, 65535];
        for &p in ports {
            interesting.extend([p.saturating_sub(1), p, p.saturating_add(1)]);
        }
        Generator {
            rng,
            vips,
            misses,
            ports: interesting,
        }
    }

    pub fn frame(&mut self) -> Vec<u8> {
        let rng = &mut self.rng;
        let dst = if rng.gen_bool(0.8) {
            *self.vips.choose(rng).unwrap()
        } else {
            *self.misses.choose(rng).unwrap()
        };
        let port = if rng.gen_bool(0.7) {
            *self.ports.choose(rng).unwrap()
        } else {
            rng.gen()
        };
        // Other protocols come from the mutations below.
        let mut spec = match rng.gen_range(0..10) {
            0..=4 => FrameSpec::udp(dst, port),
            5..=7 => FrameSpec::tcp(dst, port),
            _ => {
                let types: &[u8] = if dst.is_ipv4() {
                    &[0, 3, 8, 11, 5, 13]
                } else {
                    &[1, 2, 3, 128, 129, 135]
                };
                FrameSpec::icmp(
                    dst,
                    *types.choose(rng).unwrap(),
                    *[0u8, 3, 4].choose(rng).unwrap(),
                )
            }
        }
        .payload(rng.gen_range(0..48));
        for _ in 0..*[0usize, 0, 0, 1, 1, 2, 2, 3].choose(rng).unwrap() {
            let tpid = if rng.gen() { ETH_P_8021Q } else { ETH_P_8021AD };
            spec = spec.vlan(tpid, rng.gen_range(1..4095));
        }
        if dst.is_ipv4() {
            if rng.gen_bool(0.1) {
                let words = rng.gen_range(1..=10);
                spec = spec.ipv4_options(&vec![1; words * 4]);
            }
            if rng.gen_bool(0.15) {
                let offset = if rng.gen() { 0 } else { rng.gen_range(1..8000) };
                spec = spec.ipv4_fragment(offset, rng.gen());
            }
        } else if rng.gen_bool(0.35) {
            for _ in 0..rng.gen_range(1..=8) {
                let ext = match rng.gen_range(0..5) {
                    0 => Ext::HopByHop,
                    1 => Ext::Routing,
                    2 => Ext::DestOpts,
                    3 => Ext::Auth,
                    _ => Ext::Fragment {
                        offset: if rng.gen() { 0 } else { rng.gen_range(1..8000) },
                        more: rng.gen(),
                    },
                };
                spec = spec.ext(ext);
            }
        }
        let mut frame = spec.build();
        self.mutate(&mut frame);
        frame
    }

    fn mutate(&mut self, frame: &mut Vec<u8>) {
        let rng = &mut self.rng;
        if rng.gen_bool(0.15) {
            let len = rng.gen_range(14..frame.len());
            frame.truncate(len);
        }
        if rng.gen_bool(0.2) {
            for _ in 0..rng.gen_range(1..=3) {
                // Mostly in the headers, where a flipped byte means something.
                let end = frame.len().min(100);
                let at = rng.gen_range(12..end);
                frame[at] = rng.gen();
            }
        }
    }
}

fn random_in(rng: &mut StdRng, net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let size = 1u64 << (32 - n.prefix_len());
            IpAddr::V4(Ipv4Addr::from(
                u32::from(n.network()) + rng.gen_range(0..size) as u32,
            ))
        }
        IpNet::V6(n) => {
            let host_bits = 128 - u32::from(n.prefix_len());
            let mask = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            // A small pool per range, so the sparse table never fills.
            let host = u128::from(rng.gen_range(0u16..512))
                | (mask & (u128::from(rng.gen_range(0u8..2)) << (host_bits - 1)));
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | (host & mask)))
        }
    }
}

fn step(addr: IpAddr, by: i128) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(a) => u32::try_from(i128::from(u32::from(a)) + by)
            .ok()
            .map(|v| IpAddr::V4(v.into())),
        IpAddr::V6(a) => u128::try_from(i128::try_from(u128::from(a)).ok()? + by)
            .ok()
            .map(|v| IpAddr::V6(v.into())),
    }
}
