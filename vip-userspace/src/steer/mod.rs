//! Socket steering in userspace: finding each steer entry's socket and keeping
//! it in the datapath's SOCKMAP.

pub mod discover;

use std::os::fd::AsRawFd;

use crate::{
    datapath::{steering, Datapath, DatapathError},
    layout::{Layout, SteerSlot},
    status::SteerStatus,
};

/// How often targets are looked for again, besides after a reload.
pub const REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

struct Target {
    slot: SteerSlot,
    /// Cookie of the socket in the map, if one is.
    cookie: Option<u64>,
    /// Why the last look did not put a socket in the map, if it did not.
    problem: Problem,
}

/// A target's current problem, so that one that persists is logged once, not
/// at every refresh.
#[derive(Default)]
struct Problem(Option<String>);

impl Problem {
    /// Records this look's problem (`None`: none); returns it when it is new.
    fn update(&mut self, now: Option<String>) -> Option<&str> {
        if now == self.0 {
            return None;
        }
        self.0 = now;
        self.0.as_deref()
    }
}

#[derive(Default)]
pub struct SteerAgent {
    targets: Vec<Target>,
}

impl SteerAgent {
    /// Follows `layout`'s entries: an entry that stays as it was keeps its
    /// socket; one that went away or changed (another `to`) has its socket
    /// removed from the map, so nothing is steered to a target no entry names.
    pub fn set_layout(
        &mut self,
        layout: &Layout,
        datapath: &mut Datapath,
    ) -> Result<(), DatapathError> {
        let old = std::mem::take(&mut self.targets);
        for target in &old {
            if target.cookie.is_some() && !layout.steers.contains(&target.slot) {
                clear(datapath, target.slot.entry)?;
            }
        }
        self.targets = layout
            .steers
            .iter()
            .map(|slot| Target {
                slot: slot.clone(),
                cookie: old.iter().find(|t| t.slot == *slot).and_then(|t| t.cookie),
                problem: Problem::default(),
            })
            .collect();
        Ok(())
    }

    /// Looks for every target's socket: a new one (a service that started or
    /// restarted) goes into the map; a gone one leaves it (the kernel removes a
    /// closed socket by itself). Logs each change.
    pub fn refresh(&mut self, datapath: &mut Datapath) {
        for target in &mut self.targets {
            let slot = &target.slot;
            let what = format!(
                "steer {} {} -> {}",
                slot.range,
                slot.steer.label(),
                slot.steer.to
            );
            let found = match discover::find(slot.steer.proto, slot.steer.to) {
                Ok(found) => found,
                Err(e) => {
                    let problem = crate::errors::chain(&e);
                    if let Some(problem) = target.problem.update(Some(problem)) {
                        log::warn!("{what}: {problem}");
                    }
                    continue;
                }
            };
            match found {
                Some(found) if target.cookie == Some(found.cookie) => {}
                Some(found) => match install(datapath, slot.entry, found) {
                    Ok(pid) => {
                        log::info!("{what}: up (socket of pid {pid})");
                        target.cookie = Some(found.cookie);
                        target.problem.update(None);
                    }
                    Err(e) => {
                        let problem = format!("found but not taken: {}", crate::errors::chain(&e));
                        if let Some(problem) = target.problem.update(Some(problem)) {
                            log::warn!("{what}: {problem}");
                        }
                        target.cookie = None;
                    }
                },
                None => {
                    target.problem.update(None);
                    if target.cookie.take().is_some() {
                        log::warn!(
                            "{what}: down (nothing listens there); lookups take the normal path"
                        );
                        let _ = clear(datapath, slot.entry);
                    }
                }
            }
        }
    }

    pub fn status(&self) -> Vec<SteerStatus> {
        self.targets
            .iter()
            .map(|t| SteerStatus {
                range: t.slot.range.clone(),
                matches: t.slot.steer.label(),
                to: t.slot.steer.to.to_string(),
                entry: t.slot.entry,
                up: t.cookie.is_some(),
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
enum InstallError {
    #[error("no process holds socket inode {inode}")]
    NoOwner { inode: u32 },
    #[error(
        "the descriptors of {refused} process(es) could not be read, and none readable holds \
         socket inode {inode}: vip needs CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE to find \
         another user's socket"
    )]
    OwnerHidden { inode: u32, refused: usize },
    #[error(transparent)]
    Discover(#[from] discover::DiscoverError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("putting it in the steer map at {entry}: {source}")]
    Map {
        entry: u32,
        source: aya::maps::MapError,
    },
}

/// Puts the found socket in the map at `entry`; returns the owner's pid.
fn install(
    datapath: &mut Datapath,
    entry: u32,
    found: discover::Found,
) -> Result<u32, InstallError> {
    let inode = found.inode;
    let (pid, fd) = match discover::owner(inode) {
        discover::Owner::Found { pid, fd } => (pid, fd),
        discover::Owner::NotFound { refused: 0 } => return Err(InstallError::NoOwner { inode }),
        discover::Owner::NotFound { refused } => {
            return Err(InstallError::OwnerHidden { inode, refused })
        }
    };
    let ours = discover::take(pid, fd)?;
    let mut sockets = steering::sockets(datapath.steer_sockets()?)?;
    sockets
        .set(entry, &ours.as_raw_fd(), 0)
        .map_err(|source| InstallError::Map { entry, source })?;
    Ok(pid)
}

fn clear(datapath: &mut Datapath, entry: u32) -> Result<(), DatapathError> {
    let map = datapath.steer_sockets()?;
    let mut sockets = steering::sockets(map)?;
    // Already gone when the kernel removed a closed socket.
    let _ = sockets.clear_index(&entry);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Problem;

    #[test]
    fn a_problem_is_reported_once_until_it_changes_or_clears() {
        let mut problem = Problem::default();
        let cap = || Some("found but not taken: needs CAP_SYS_PTRACE".to_string());
        assert_eq!(
            problem.update(cap()),
            Some("found but not taken: needs CAP_SYS_PTRACE")
        );
        assert_eq!(problem.update(cap()), None);
        assert_eq!(problem.update(cap()), None);
        assert_eq!(
            problem.update(Some("no process holds socket inode 7".into())),
            Some("no process holds socket inode 7")
        );
        assert_eq!(problem.update(None), None);
        assert_eq!(
            problem.update(cap()),
            Some("found but not taken: needs CAP_SYS_PTRACE")
        );
    }
}
