//! Allow-list entries: `tcp/80`, `udp/5000-5100`, `icmp`.

use std::fmt;

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
}
