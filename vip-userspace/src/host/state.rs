//! The state file: what vip changed on this host, so `vip down` can undo exactly
//! that and nothing else.

use serde::{Deserialize, Serialize};

use super::items::Item;
use crate::run_files::{RunFile, RunFileKind};

/// Something vip added or changed, with what it replaced (sysctls only; a
/// sysctl wanted while its interface was gone has none until it is set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub item: Item,
    pub previous: Option<String>,
}

impl Owned {
    /// A sysctl recorded while its interface was gone: wanted, not set yet.
    pub fn is_waiting(&self) -> bool {
        self.previous.is_none() && matches!(self.item, Item::Sysctl { .. })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The `vip run` that owns this state, if one is running.
    pub daemon_pid: Option<u32>,
    /// In the order applied; reverted in reverse.
    pub owned: Vec<Owned>,
}

impl RunFileKind for State {
    const FILE: &'static str = "state.json";
    const WHAT: &'static str = "state file";
    const VERSION: u32 = 2;
}

pub type StateFile = RunFile<State>;

impl State {
    pub fn owns(&self, item: &Item) -> bool {
        self.owned.iter().any(|o| o.item.same_target(item))
    }

    /// Records `item` as made, replacing `previous`. A sysctl recorded while
    /// its interface was gone takes the value it replaced now.
    pub fn record(&mut self, item: Item, previous: Option<String>) {
        let waiting = self
            .owned
            .iter_mut()
            .find(|o| o.is_waiting() && o.item.same_target(&item));
        match waiting {
            Some(owned) => {
                owned.item = item;
                owned.previous = previous;
            }
            None => self.owned.push(Owned { item, previous }),
        }
    }

    /// The `vip run` that owns this state, if it is still running.
    pub fn live_daemon(&self) -> Option<u32> {
        self.daemon_pid.filter(|&pid| alive(pid))
    }
}

/// Whether a process with this pid exists and has not exited (a zombie has).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(key: &str, value: &str) -> Item {
        Item::Sysctl {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_sysctl_wanted_while_its_interface_was_gone_takes_the_value_it_replaces() {
        let key = "net.ipv4.conf.eth1.arp_ignore";
        let mut state = State::default();
        state.owned.push(Owned {
            item: sysctl(key, "1"),
            previous: None,
        });
        state.record(sysctl(key, "1"), Some("0".into()));
        assert_eq!(
            state.owned,
            vec![Owned {
                item: sysctl(key, "1"),
                previous: Some("0".into()),
            }]
        );
        // Set once: a later change of value is recorded on top, as before.
        state.record(sysctl(key, "2"), Some("1".into()));
        assert_eq!(state.owned.len(), 2);
        assert_eq!(state.owned[1].previous.as_deref(), Some("1"));
    }
}
