//! The datapath's encodings of the operator's config: allow lists as
//! `RangePolicy`, tunnels as `DECAP_*` bits, ranges as dense slot counts.

use ipnet::IpNet;
use vip_common::{
    AllowEntry, PortBitmap, RangePolicy, DECAP_GUE, DECAP_IP6IP6, DECAP_IPIP, DENSE_MIN_PREFIX_V4,
    DENSE_MIN_PREFIX_V6, IPPROTO_TCP, IPPROTO_UDP, MAX_ALLOW_ENTRIES, PER_VIP_DECLARED_ONLY,
    PER_VIP_SPARSE, PER_VIP_SPARSE_DECLARED, POLICY_ENFORCED, POLICY_ICMP, POLICY_TCP, POLICY_UDP,
};

use crate::config::{AllowList, Decap, Encap, Range, Rule};

/// A range's allow list as the datapath reads it (`None`: no list, allow all).
pub fn range_policy(allow: Option<&AllowList>) -> RangePolicy {
    let mut policy: RangePolicy = bytemuck::Zeroable::zeroed();
    let Some(allow) = allow else {
        return policy;
    };
    policy.flags = POLICY_ENFORCED;
    for rule in &allow.rules {
        let (proto, first, last) = match *rule {
            Rule::Icmp => {
                policy.flags |= POLICY_ICMP;
                continue;
            }
            Rule::Tcp { first, last } => {
                policy.flags |= POLICY_TCP;
                (IPPROTO_TCP, first, last)
            }
            Rule::Udp { first, last } => {
                policy.flags |= POLICY_UDP;
                (IPPROTO_UDP, first, last)
            }
        };
        let index = policy.entry_count as usize;
        assert!(index < MAX_ALLOW_ENTRIES, "validation bounds allow lists");
        policy.entries[index] = AllowEntry {
            proto,
            port_first_host: first,
            port_last_host: last,
            ..AllowEntry::default()
        };
        policy.entry_count += 1;
    }
    policy
}

/// The ports `policy` allows for `proto` (TCP or UDP), as the datapath tests
/// them: one bit per port.
pub fn port_bitmap(policy: &RangePolicy, proto: u8) -> PortBitmap {
    let mut bitmap: PortBitmap = bytemuck::Zeroable::zeroed();
    let used = &policy.entries[..policy.entry_count as usize];
    for entry in used.iter().filter(|e| e.proto == proto) {
        for port in entry.port_first_host..=entry.port_last_host {
            bitmap.allow(port);
        }
    }
    bitmap
}

pub fn encap_flag(encap: Encap) -> u32 {
    match encap {
        Encap::Ipip => DECAP_IPIP,
        Encap::Ip6ip6 => DECAP_IP6IP6,
        Encap::Gue => DECAP_GUE,
    }
}

/// The `DECAP_*` bits of the tunnels an interface strips.
pub fn decap_flags(decap: &Decap) -> u32 {
    decap
        .encaps
        .iter()
        .fold(0, |flags, &e| flags | encap_flag(e))
}

/// How a sparse range counts per VIP: `PER_VIP_SPARSE`, or with declared VIPs
/// first (`PER_VIP_SPARSE_DECLARED`), or declared VIPs only
/// (`PER_VIP_DECLARED_ONLY`, when it does not learn).
pub fn sparse_mode(range: &Range) -> u32 {
    match (range.learn, range.vips.is_empty()) {
        (false, _) => PER_VIP_DECLARED_ONLY,
        (true, true) => PER_VIP_SPARSE,
        (true, false) => PER_VIP_SPARSE_DECLARED,
    }
}

/// Number of dense per-VIP slots a network would have: its size for IPv4
/// networks of `DENSE_MIN_PREFIX_V4` or longer and IPv6 ones of
/// `DENSE_MIN_PREFIX_V6` or longer, else 0 (sparse).
pub fn dense_len(cidr: &IpNet) -> u32 {
    match cidr {
        IpNet::V4(net) if net.prefix_len() >= DENSE_MIN_PREFIX_V4 => {
            1u32 << (32 - net.prefix_len())
        }
        IpNet::V6(net) if net.prefix_len() >= DENSE_MIN_PREFIX_V6 => {
            1u32 << (128 - net.prefix_len())
        }
        _ => 0,
    }
}

/// Whether a range counts per VIP in dense slots: one of [`dense_len`]'s
/// size that learns every VIP. An IPv6 range that declares VIPs or does not
/// learn stays sparse (on IPv4 such ranges are refused by the config).
pub fn is_dense(range: &Range) -> bool {
    dense_len(&range.cidr) > 0 && range.vips.is_empty() && range.learn
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    #[test]
    fn policies_encode_entries_and_icmp() {
        let allow = AllowList {
            rules: ["tcp/80", "icmp", "udp/5000-5100"]
                .map(|r| Rule::parse(r).unwrap())
                .to_vec(),
        };
        let policy = range_policy(Some(&allow));
        assert_eq!(
            policy.flags,
            POLICY_ENFORCED | POLICY_ICMP | POLICY_TCP | POLICY_UDP
        );
        assert_eq!(policy.entry_count, 2);
        let entry = |i: usize| {
            let e = policy.entries[i];
            (e.proto, e.port_first_host, e.port_last_host)
        };
        assert_eq!(entry(0), (6, 80, 80));
        assert_eq!(entry(1), (17, 5000, 5100));
        assert_eq!(range_policy(None).flags, 0);
        assert_eq!(
            range_policy(Some(&AllowList::default())).flags,
            POLICY_ENFORCED
        );
    }

    #[test]
    fn port_bitmaps_hold_exactly_the_listed_ports() {
        let allow = AllowList {
            rules: ["tcp/80", "tcp/60-130", "udp/0", "udp/65472-65535", "icmp"]
                .map(|r| Rule::parse(r).unwrap())
                .to_vec(),
        };
        let policy = range_policy(Some(&allow));
        let tcp = port_bitmap(&policy, IPPROTO_TCP);
        let udp = port_bitmap(&policy, IPPROTO_UDP);
        for port in 0..=u16::MAX {
            assert_eq!(tcp.allows(port), (60..=130).contains(&port), "tcp/{port}");
            assert_eq!(udp.allows(port), port == 0 || port >= 65_472, "udp/{port}");
        }
        assert_eq!(tcp.words[0], !0 << 60);
        assert_eq!(tcp.words[2], (1 << 3) - 1);
        assert_eq!(udp.words[1023], !0);
        assert_eq!(
            port_bitmap(&range_policy(None), IPPROTO_TCP).words,
            [0; 1024]
        );
    }

    #[test]
    fn decap_flags_are_the_configured_tunnels() {
        let decap = |extra: &str| {
            let text = format!(
                "interfaces = [\"eth0\"]\n{extra}\n[[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\n"
            );
            Config::parse(&text, Path::new("test")).unwrap().decap
        };
        assert_eq!(decap_flags(&decap("")), 0);
        assert_eq!(
            decap_flags(&decap("decap = [\"gue\", \"ipip\", \"gue\"]")),
            DECAP_IPIP | DECAP_GUE
        );
        assert_eq!(decap_flags(&decap("decap = [\"ip6ip6\"]")), DECAP_IP6IP6);
    }

    #[test]
    fn dense_slots_cover_ipv4_ranges_of_16_and_ipv6_of_112_or_longer() {
        assert_eq!(dense_len(&"192.0.2.0/24".parse().unwrap()), 256);
        assert_eq!(dense_len(&"192.0.2.7/32".parse().unwrap()), 1);
        assert_eq!(dense_len(&"198.18.0.0/16".parse().unwrap()), 65_536);
        assert_eq!(dense_len(&"198.18.0.0/15".parse().unwrap()), 0);
        assert_eq!(dense_len(&"2001:db8::/120".parse().unwrap()), 256);
        assert_eq!(dense_len(&"2001:db8::/112".parse().unwrap()), 65_536);
        assert_eq!(dense_len(&"2001:db8::7/128".parse().unwrap()), 1);
        assert_eq!(dense_len(&"2001:db8::/111".parse().unwrap()), 0);
    }
}
