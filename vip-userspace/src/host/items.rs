//! The host state a config asks for, one item per address, route or sysctl.

use std::{fmt, net::IpAddr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use super::sysctl::conf_key;
use crate::config::{Accept, Config, Range};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// The seed's `lo:0`: the range's network address and prefix on `lo`.
    Alias {
        cidr: Ipv4Net,
        label: String,
    },
    /// An AnyIP route in the local table.
    LocalRoute {
        cidr: IpNet,
    },
    /// The router's CIDR route through a next hop (on interface `dev`).
    Route {
        cidr: IpNet,
        via: IpAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dev: Option<String>,
    },
    Sysctl {
        key: String,
        value: String,
    },
}

impl Item {
    /// Name used in logs and in repair counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Alias { .. } => "alias",
            Item::LocalRoute { .. } => "local_route",
            Item::Route { .. } => "route",
            Item::Sysctl { .. } => "sysctl",
        }
    }

    /// Whether `other` is the same address, route or sysctl (whatever its value,
    /// or an alias's label, which follows the range's place in the config).
    pub fn same_target(&self, other: &Item) -> bool {
        match (self, other) {
            (Item::Sysctl { key: a, .. }, Item::Sysctl { key: b, .. }) => a == b,
            (Item::Alias { cidr: a, .. }, Item::Alias { cidr: b, .. }) => a == b,
            (a, b) => a == b,
        }
    }

    /// The command that removes the item (sysctls: restores `previous`).
    pub fn undo_command(&self, previous: Option<&str>) -> String {
        match self {
            Item::Alias { cidr, .. } => format!("ip addr del {cidr} dev lo"),
            Item::LocalRoute { cidr } => {
                format!("{} route del local {cidr} dev lo table local", ip(cidr))
            }
            Item::Route { cidr, via, dev } => {
                format!("{} route del {cidr} via {via}{}", ip(cidr), on_dev(dev))
            }
            Item::Sysctl { key, .. } => match previous {
                Some(previous) => format!("sysctl -w {key}={previous}"),
                None => format!("{key} (never set, nothing to restore)"),
            },
        }
    }
}

fn ip(cidr: &IpNet) -> &'static str {
    if cidr.addr().is_ipv4() {
        "ip"
    } else {
        "ip -6"
    }
}

/// The equivalent command, as `vip plan` prints it.
impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Alias { cidr, label } => write!(f, "ip addr add {cidr} dev lo label {label}"),
            Item::LocalRoute { cidr } => {
                write!(f, "{} route add local {cidr} dev lo table local", ip(cidr))
            }
            Item::Route { cidr, via, dev } => {
                write!(f, "{} route add {cidr} via {via}{}", ip(cidr), on_dev(dev))
            }
            Item::Sysctl { key, value } => write!(f, "sysctl -w {key}={value}"),
        }
    }
}

fn on_dev(dev: &Option<String>) -> String {
    dev.as_ref()
        .map(|d| format!(" dev {d}"))
        .unwrap_or_default()
}

fn sysctl(key: String, value: &str) -> Item {
    Item::Sysctl {
        key,
        value: value.to_string(),
    }
}

/// Range number `index`'s own alias or AnyIP route.
fn range_item(index: usize, range: &Range) -> Option<Item> {
    match (range.accept, range.cidr) {
        (Accept::Alias, IpNet::V4(cidr)) => Some(Item::Alias {
            cidr,
            label: format!("lo:vip{index}"),
        }),
        (Accept::Route, cidr) => Some(Item::LocalRoute { cidr }),
        // Validation refuses alias on IPv6.
        (Accept::Alias, IpNet::V6(_)) | (Accept::None, _) => None,
    }
}

/// The range whose alias or AnyIP route makes range `index`'s addresses
/// local: the outermost of it and the ranges holding it that accepts locally
/// (`parents`: `config::nesting::parents`). A range inside one that accepts
/// needs nothing of its own, and two aliases of one network address (a /24 and
/// a /25 inside it) would read as each other's conflict.
fn local_by(config: &Config, parents: &[Option<usize>], index: usize) -> Option<usize> {
    let mut found = None;
    let mut at = Some(index);
    while let Some(i) = at {
        if config.ranges[i].accept != Accept::None {
            found = Some(i);
        }
        at = parents[i];
    }
    found
}

/// The item that makes range number `index`'s addresses local, its own or
/// that of a range holding it ([`local_by`]).
pub fn local_item(config: &Config, parents: &[Option<usize>], index: usize) -> Option<Item> {
    local_by(config, parents, index).and_then(|i| range_item(i, &config.ranges[i]))
}

/// A range that asks to be made local but needs nothing of its own: a range
/// holding it does that ([`local_by`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    pub range: String,
    pub cidr: IpNet,
    pub by: String,
    pub by_cidr: IpNet,
    /// How `by` is made local: `Alias` or `Route`.
    pub by_accept: Accept,
}

impl fmt::Display for Covered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.by_accept {
            Accept::Alias => "alias on lo",
            Accept::Route | Accept::None => "AnyIP route",
        };
        write!(
            f,
            "range {:?} ({}) lies in range {:?} ({}), whose {how} makes it local",
            self.range, self.cidr, self.by, self.by_cidr
        )
    }
}

/// Every range of `config` that accepts locally through a range holding it.
pub fn covered(config: &Config) -> Vec<Covered> {
    let parents = crate::config::nesting::parents(&config.ranges);
    config
        .ranges
        .iter()
        .enumerate()
        .filter(|(_, range)| range.accept != Accept::None)
        .filter_map(|(index, range)| {
            let by = local_by(config, &parents, index).filter(|&by| by != index)?;
            Some(Covered {
                range: range.name.clone(),
                cidr: range.cidr,
                by: config.ranges[by].name.clone(),
                by_cidr: config.ranges[by].cidr,
                by_accept: config.ranges[by].accept,
            })
        })
        .collect()
}

/// Everything `config` asks of the host, in the order it is applied.
pub fn desired(config: &Config) -> Vec<Item> {
    let parents = crate::config::nesting::parents(&config.ranges);
    let mut items: Vec<Item> = config
        .ranges
        .iter()
        .enumerate()
        .filter(|&(index, _)| local_by(config, &parents, index) == Some(index))
        .filter_map(|(index, range)| range_item(index, range))
        .collect();
    for route in &config.routes {
        items.push(Item::Route {
            cidr: route.cidr,
            via: route.via,
            dev: route.dev.clone(),
        });
    }
    if config.arp_sysctls {
        let scopes = std::iter::once("all").chain(config.interfaces.iter().map(String::as_str));
        for scope in scopes {
            items.push(sysctl(conf_key("ipv4", scope, "arp_ignore"), "1"));
            items.push(sysctl(conf_key("ipv4", scope, "arp_announce"), "2"));
        }
    }
    let router = &config.router;
    if let Some(on) = router.ip_forward {
        items.push(sysctl(
            "net.ipv4.ip_forward".into(),
            if on { "1" } else { "0" },
        ));
    }
    if let Some(on) = router.ipv6_forwarding {
        items.push(sysctl(
            "net.ipv6.conf.all.forwarding".into(),
            if on { "1" } else { "0" },
        ));
    }
    if let Some(mode) = router.rp_filter {
        for scope in ["all", "default"] {
            items.push(sysctl(
                format!("net.ipv4.conf.{scope}.rp_filter"),
                &mode.to_string(),
            ));
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("t")).unwrap()
    }

    /// What `vip plan` would print for `config`, one command each.
    fn commands(config: &Config) -> Vec<String> {
        desired(config).iter().map(Item::to_string).collect()
    }

    #[test]
    fn a_real_server_and_a_router_config_give_the_seed_commands() {
        let config = parse(
            r#"
            interfaces = ["eth0"]
            [[range]]
            name = "web"
            cidr = "192.0.2.0/24"
            accept = "alias"
            [[range]]
            name = "web6"
            cidr = "2001:db8:1::/64"
            accept = "route"
            [[range]]
            name = "counted"
            cidr = "203.0.113.0/24"
            [[route]]
            cidr = "198.51.100.0/24"
            via = "198.18.0.2"
            [router]
            rp_filter = 1
            "#,
        );
        assert_eq!(
            commands(&config),
            [
                "ip addr add 192.0.2.0/24 dev lo label lo:vip0",
                "ip -6 route add local 2001:db8:1::/64 dev lo table local",
                "ip route add 198.51.100.0/24 via 198.18.0.2",
                "sysctl -w net.ipv4.conf.all.arp_ignore=1",
                "sysctl -w net.ipv4.conf.all.arp_announce=2",
                "sysctl -w net.ipv4.conf.eth0.arp_ignore=1",
                "sysctl -w net.ipv4.conf.eth0.arp_announce=2",
                "sysctl -w net.ipv4.ip_forward=1",
                "sysctl -w net.ipv4.conf.all.rp_filter=1",
                "sysctl -w net.ipv4.conf.default.rp_filter=1",
            ]
        );
    }

    #[test]
    fn a_range_inside_one_that_accepts_needs_nothing_of_its_own() {
        let config = parse(
            r#"
            interfaces = ["eth0"]
            arp_sysctls = false
            [[range]]
            name = "host"
            cidr = "192.0.2.53/32"
            accept = "alias"
            [[range]]
            name = "web"
            cidr = "192.0.2.0/24"
            accept = "alias"
            [[range]]
            name = "half"
            cidr = "192.0.2.0/25"
            accept = "route"
            [[range]]
            name = "counted"
            cidr = "198.51.100.0/24"
            [[range]]
            name = "inside_counted"
            cidr = "198.51.100.16/28"
            accept = "alias"
            [[range]]
            name = "innermost"
            cidr = "198.51.100.20/30"
            accept = "route"
            "#,
        );
        assert_eq!(
            commands(&config),
            [
                "ip addr add 192.0.2.0/24 dev lo label lo:vip1",
                "ip addr add 198.51.100.16/28 dev lo label lo:vip4",
            ]
        );
        let parents = crate::config::nesting::parents(&config.ranges);
        let local = |index| local_item(&config, &parents, index).map(|i| i.to_string());
        let web = Some("ip addr add 192.0.2.0/24 dev lo label lo:vip1".to_string());
        assert_eq!(local(0), web);
        assert_eq!(local(2), web);
        assert_eq!(local(3), None);
        assert_eq!(
            local(5),
            Some("ip addr add 198.51.100.16/28 dev lo label lo:vip4".to_string())
        );
        let covered: Vec<String> = covered(&config).iter().map(ToString::to_string).collect();
        assert_eq!(
            covered,
            [
                r#"range "host" (192.0.2.53/32) lies in range "web" (192.0.2.0/24), whose alias on lo makes it local"#,
                r#"range "half" (192.0.2.0/25) lies in range "web" (192.0.2.0/24), whose alias on lo makes it local"#,
                r#"range "innermost" (198.51.100.20/30) lies in range "inside_counted" (198.51.100.16/28), whose alias on lo makes it local"#,
            ]
        );
    }

    #[test]
    fn count_only_ranges_change_nothing() {
        let config =
            parse("interfaces = [\"eth0\"]\n[[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\n");
        assert!(desired(&config).is_empty());
    }

    #[test]
    fn arp_sysctls_can_be_switched_off() {
        let config = parse(
            "interfaces = [\"eth0\"]\narp_sysctls = false\n[[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\n",
        );
        assert_eq!(
            desired(&config),
            [Item::LocalRoute {
                cidr: "192.0.2.0/24".parse().unwrap()
            }]
        );
    }
}
