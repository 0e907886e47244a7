//! Allow-list entries: `tcp/80`, `udp/5000-5100`, `icmp`.

use std::fmt;

use vip_common::{
    AllowEntry, RangePolicy, IPPROTO_TCP, IPPROTO_UDP, MAX_ALLOW_ENTRIES, POLICY_ENFORCED,
    POLICY_ICMP,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Tcp { first: u16, last: u16 },
    Udp { first: u16, last: u16 },
    Icmp,
}

/// A range's allow list; what it does not allow is dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    pub rules: Vec<Rule>,
}

impl Rule {
    /// Parses one entry; `None` when it is not of the documented forms.
    pub fn parse(text: &str) -> Option<Rule> {
        let text = text.trim();
        if text == "icmp" {
            return Some(Rule::Icmp);
        }
        let (proto, ports) = text.split_once('/')?;
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let port = ports.parse().ok()?;
                (port, port)
            }
        };
        if first > last {
            return None;
        }
        match proto {
            "tcp" => Some(Rule::Tcp { first, last }),
            "udp" => Some(Rule::Udp { first, last }),
            _ => None,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (proto, first, last) = match self {
            Rule::Icmp => return f.write_str("icmp"),
            Rule::Tcp { first, last } => ("tcp", first, last),
            Rule::Udp { first, last } => ("udp", first, last),
        };
        if first == last {
            write!(f, "{proto}/{first}")
        } else {
            write!(f, "{proto}/{first}-{last}")
        }
    }
}

/// The datapath's form of a range's allow list (`None`: no list, allow all).
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
            Rule::Tcp { first, last } => (IPPROTO_TCP, first, last),
            Rule::Udp { first, last } => (IPPROTO_UDP, first, last),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_print_back() {
        for text in ["tcp/80", "udp/5000-5100", "icmp", "tcp/0-65535"] {
            assert_eq!(Rule::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "tcp",
            "tcp/",
            "tcp/70000",
            "udp/10-5",
            "sctp/1",
            "icmp/8",
            "tcp/80-",
            "",
        ] {
            assert_eq!(Rule::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn policies_encode_entries_and_icmp() {
        let allow = AllowList {
            rules: ["tcp/80", "icmp", "udp/5000-5100"]
                .map(|r| Rule::parse(r).unwrap())
                .to_vec(),
        };
        let policy = range_policy(Some(&allow));
        assert_eq!(policy.flags, POLICY_ENFORCED | POLICY_ICMP);
        assert_eq!(policy.entry_count, 2);
        assert_eq!(
            (
                policy.entries[0].proto,
                policy.entries[0].port_first_host,
                policy.entries[0].port_last_host
            ),
            (6, 80, 80)
        );
        assert_eq!(
            (
                policy.entries[1].proto,
                policy.entries[1].port_first_host,
                policy.entries[1].port_last_host
            ),
            (17, 5000, 5100)
        );
        assert_eq!(range_policy(None).flags, 0);
        assert_eq!(
            range_policy(Some(&AllowList::default())).flags,
            POLICY_ENFORCED
        );
    }
}
