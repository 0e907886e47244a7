//! Comparing what the config asks for with what the host has, and the safety
//! checks that need the host's addresses and routes. Read-only.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use super::{
    items::{Covered, Item},
    netlink::{Address, Netlink, NetlinkError, Route, TABLE_LOCAL, TABLE_MAIN},
    state::State,
    sysctl::{self, SysctlError},
    HostError,
};
use crate::config::Config;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    InPlace,
    Missing,
    /// Something else holds the place (a route via another next hop, the same
    /// address with another prefix). vip will not replace it.
    Conflict(String),
    /// Its place is not on the host now: a sysctl of an interface that is
    /// gone (deleted, to be created again) or whose sysctls are not
    /// registered yet. Nothing to make or undo until the interface is back,
    /// with its sysctls at their defaults.
    Absent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub item: Item,
    pub status: Status,
    /// A sysctl's value now.
    pub current: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    #[error("range {range:?} ({cidr}) contains {addr}, configured on interface {interface}")]
    AddressInRange {
        range: String,
        cidr: IpNet,
        addr: IpAddr,
        interface: String,
    },
    #[error("range {range:?} ({cidr}) contains the default gateway {gateway}")]
    GatewayInRange {
        range: String,
        cidr: IpNet,
        gateway: IpAddr,
    },
    #[error("{item}: {reason}; vip does not replace what it did not add")]
    Conflict { item: String, reason: String },
}

impl crate::errors::Blame for SafetyError {
    /// The config would take over addresses or routes the host already uses.
    fn is_user_error(&self) -> bool {
        true
    }
}

/// A snapshot of the host's addresses and routes.
pub struct HostView {
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    loopback: u32,
    /// The aliases `state` records as vip's: one of them beside another alias
    /// of the same network address is not someone else's. So a config whose
    /// new range holds an owned one of the same network address (a /24 added
    /// around a /26 at .0, whose alias it makes redundant) is not refused as
    /// a conflict with vip's own alias, which is reverted once the new one is in.
    owned_aliases: Vec<Ipv4Net>,
}

impl HostView {
    /// The host as it is, and what of it `state` says vip owns.
    pub async fn read(netlink: &Netlink, state: &State) -> Result<HostView, NetlinkError> {
        Ok(HostView {
            addresses: netlink.addresses().await?,
            routes: netlink.routes().await?,
            loopback: netlink.loopback_index(),
            owned_aliases: owned_aliases(state),
        })
    }

    pub fn status(&self, item: &Item) -> Result<(Status, Option<String>), SysctlError> {
        let status = match item {
            Item::Alias { cidr, .. } => {
                // The same address may be on lo with other prefixes too
                // (someone else's): this one's is what counts.
                let on_lo: Vec<&Address> = self
                    .addresses
                    .iter()
                    .filter(|a| a.ifindex == self.loopback && a.addr == IpAddr::V4(cidr.network()))
                    .collect();
                let owned = |a: &Address| {
                    self.owned_aliases
                        .iter()
                        .any(|o| o.network() == cidr.network() && o.prefix_len() == a.prefix_len)
                };
                if on_lo.iter().any(|a| a.prefix_len == cidr.prefix_len()) {
                    Status::InPlace
                } else if let Some(a) = on_lo.iter().find(|a| !owned(a)) {
                    Status::Conflict(format!("{} is on lo as /{}", a.addr, a.prefix_len))
                } else {
                    Status::Missing
                }
            }
            Item::LocalRoute { cidr } => {
                let present = self
                    .routes
                    .iter()
                    .any(|r| r.table == TABLE_LOCAL && r.local && r.dst == *cidr);
                if present {
                    Status::InPlace
                } else {
                    Status::Missing
                }
            }
            Item::Route { cidr, via, dev } => {
                let existing: Vec<&Route> = self
                    .routes
                    .iter()
                    .filter(|r| r.table == TABLE_MAIN && r.dst == *cidr)
                    .collect();
                // A route's interface that is gone took the route along.
                let oif = dev
                    .as_deref()
                    .map(|d| nix::net::if_::if_nametoindex(d).ok());
                let ours = existing.iter().any(|r| {
                    r.gateway == Some(*via) && oif.is_none_or(|oif| oif.is_some() && r.oif == oif)
                });
                if ours {
                    Status::InPlace
                } else if let Some(other) = existing.first() {
                    Status::Conflict(match other.gateway {
                        Some(gw) => format!("{cidr} is already routed via {gw}"),
                        None => format!("{cidr} is already routed"),
                    })
                } else {
                    Status::Missing
                }
            }
            Item::Sysctl { key, value } => {
                let Some(current) = sysctl::read_if_present(key)? else {
                    return Ok((Status::Absent, None));
                };
                let status = if &current == value {
                    Status::InPlace
                } else {
                    Status::Missing
                };
                return Ok((status, Some(current)));
            }
        };
        Ok((status, None))
    }

    /// Refuses ranges that would take over addresses the host already uses.
    pub fn check_safety(&self, config: &Config) -> Result<(), SafetyError> {
        for range in &config.ranges {
            for address in &self.addresses {
                if address.ifindex != self.loopback && range.cidr.contains(&address.addr) {
                    return Err(SafetyError::AddressInRange {
                        range: range.name.clone(),
                        cidr: range.cidr,
                        addr: address.addr,
                        interface: interface_name(address.ifindex),
                    });
                }
            }
            let gateways = self
                .routes
                .iter()
                .filter(|r| r.table == TABLE_MAIN && r.dst.prefix_len() == 0)
                .filter_map(|r| r.gateway);
            for gateway in gateways {
                if range.cidr.contains(&gateway) {
                    return Err(SafetyError::GatewayInRange {
                        range: range.name.clone(),
                        cidr: range.cidr,
                        gateway,
                    });
                }
            }
        }
        Ok(())
    }
}

fn interface_name(index: u32) -> String {
    nix::net::if_::if_indextoname(index)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("#{index}"))
}

/// Every item of the config with its status; refuses conflicts.
pub fn plan(view: &HostView, items: Vec<Item>) -> Result<Vec<Step>, HostError> {
    items
        .into_iter()
        .map(|item| {
            let (status, current) = view.status(&item)?;
            if let Status::Conflict(reason) = &status {
                return Err(SafetyError::Conflict {
                    item: item.to_string(),
                    reason: reason.clone(),
                }
                .into());
            }
            Ok(Step {
                item,
                status,
                current,
            })
        })
        .collect()
}

/// `vip plan`'s output: one command per change, what is already in place, and
/// the ranges that need nothing of their own (`covered`).
pub fn render(steps: &[Step], covered: &[Covered]) -> String {
    let mut out = String::new();
    for step in steps {
        match step.status {
            Status::Missing => out.push_str(&format!("{}\n", step.item)),
            Status::InPlace => out.push_str(&format!("# in place: {}\n", step.item)),
            Status::Absent => out.push_str(&format!(
                "# not on this host now (its interface is gone): {}\n",
                step.item
            )),
            Status::Conflict(ref reason) => {
                out.push_str(&format!("# conflict: {} ({reason})\n", step.item))
            }
        }
    }
    for range in covered {
        out.push_str(&format!("# nothing of its own: {range}\n"));
    }
    if steps.iter().all(|s| s.status != Status::Missing) {
        out.push_str("# nothing to change\n");
    }
    out
}

fn owned_aliases(state: &State) -> Vec<Ipv4Net> {
    state
        .owned
        .iter()
        .filter_map(|o| match o.item {
            Item::Alias { cidr, .. } => Some(cidr),
            _ => None,
        })
        .collect()
}

/// Reads this host and plans `config` against it (after its safety check),
/// `state` being what vip owns there now: changes nothing.
pub async fn planned(config: &Config, state: &State) -> Result<(Netlink, Vec<Step>), HostError> {
    let netlink = Netlink::connect()?;
    let view = HostView::read(&netlink, state).await?;
    view.check_safety(config)?;
    let steps = plan(&view, super::desired(config))?;
    Ok((netlink, steps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::state::Owned;

    fn alias(cidr: &str) -> Item {
        Item::Alias {
            cidr: cidr.parse().unwrap(),
            label: "lo:vip0".into(),
        }
    }

    /// lo (index 1) holds 192.0.2.0/25; vip owns the aliases `state` records.
    fn view(state: &State) -> HostView {
        HostView {
            addresses: vec![Address {
                ifindex: 1,
                addr: "192.0.2.0".parse().unwrap(),
                prefix_len: 25,
            }],
            routes: Vec::new(),
            loopback: 1,
            owned_aliases: owned_aliases(state),
        }
    }

    #[test]
    fn another_prefix_of_an_alias_is_a_conflict_unless_vip_owns_it() {
        let wider = alias("192.0.2.0/24");
        assert_eq!(
            view(&State::default()).status(&wider).unwrap().0,
            Status::Conflict("192.0.2.0 is on lo as /25".into())
        );
        let owning = |items: &[&str]| State {
            daemon_pid: None,
            owned: items
                .iter()
                .map(|c| Owned {
                    item: alias(c),
                    previous: None,
                })
                .collect(),
        };
        let view = view(&owning(&["192.0.2.0/25"]));
        assert_eq!(view.status(&wider).unwrap().0, Status::Missing);
        assert_eq!(
            view.status(&alias("192.0.2.0/25")).unwrap().0,
            Status::InPlace
        );
        // Owning another prefix does not make someone's /25 vip's.
        let view = self::view(&owning(&["192.0.2.0/24"]));
        assert_eq!(
            view.status(&wider).unwrap().0,
            Status::Conflict("192.0.2.0 is on lo as /25".into())
        );
    }
}
