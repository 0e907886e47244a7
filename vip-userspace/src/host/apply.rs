//! Making changes: apply the missing items, revert what the state file owns, and
//! put back owned items that drifted.

use super::{
    items::Item,
    netlink::Netlink,
    plan::{HostView, Status, Step},
    state::{Owned, State, StateFile},
    sysctl, HostError,
};

async fn make(netlink: &Netlink, item: &Item) -> Result<(), HostError> {
    match item {
        Item::Alias { cidr, label } => netlink.add_alias(*cidr, label).await?,
        Item::LocalRoute { cidr } => netlink.add_local_route(*cidr).await?,
        Item::Route { cidr, via, dev } => netlink.add_route(*cidr, *via, dev.as_deref()).await?,
        Item::Sysctl { key, value } => sysctl::write(key, value)?,
    }
    Ok(())
}

async fn unmake(netlink: &Netlink, owned: &Owned) -> Result<(), HostError> {
    match &owned.item {
        Item::Alias { cidr, .. } => netlink.del_alias(*cidr).await?,
        Item::LocalRoute { cidr } => netlink.del_local_route(*cidr).await?,
        Item::Route { cidr, via, dev } => netlink.del_route(*cidr, *via, dev.as_deref()).await?,
        Item::Sysctl { key, .. } => {
            if let Some(previous) = &owned.previous {
                sysctl::write(key, previous)?;
            }
        }
    }
    Ok(())
}

/// Makes every missing step, recording each in the state file as soon as it is
/// made, and returns how many it made. A sysctl of an interface that is gone
/// is recorded as wanted, with no previous value yet: the drift repair sets
/// it, and records the value it replaces, when the interface is back. On a
/// failure, undoes this call's changes and returns the error.
pub async fn apply(
    netlink: &Netlink,
    steps: &[Step],
    state: &mut State,
    file: &StateFile,
) -> Result<usize, HostError> {
    let before = state.owned.clone();
    for step in steps.iter().filter(|s| s.status == Status::Absent) {
        if !state.owns(&step.item) {
            log::warn!(
                "{}: not on this host now (its interface is gone); set when the interface is back",
                step.item
            );
            state.owned.push(Owned {
                item: step.item.clone(),
                previous: None,
            });
            file.save(state)?;
        }
    }
    let mut made = 0;
    for step in steps.iter().filter(|s| s.status == Status::Missing) {
        if let Err(error) = make(netlink, &step.item).await {
            undo_since(netlink, state, before).await;
            file.save(state)?;
            return Err(error);
        }
        log::info!("applied: {}", step.item);
        state.record(step.item.clone(), step.current.clone());
        file.save(state)?;
        made += 1;
    }
    Ok(made)
}

/// Puts `state` back to `before`, undoing what was made since, newest first.
async fn undo_since(netlink: &Netlink, state: &mut State, before: Vec<Owned>) {
    let made: Vec<Owned> = state
        .owned
        .iter()
        .filter(|o| !before.contains(o))
        .cloned()
        .collect();
    for owned in made.iter().rev() {
        // Recorded as wanted while its interface was gone: nothing was made.
        if owned.is_waiting() {
            continue;
        }
        if let Err(e) = unmake(netlink, owned).await {
            log::error!("undoing {}: {}", owned.item, crate::errors::chain(&e));
        }
    }
    state.owned = before;
}

/// Reverts everything `state` owns, newest first, and forgets it. Items already
/// gone are skipped; sysctls get their previous values back.
pub async fn revert(
    netlink: &Netlink,
    state: &mut State,
    file: &StateFile,
) -> Result<(), HostError> {
    let view = HostView::read(netlink, state).await?;
    while let Some(owned) = state.owned.pop() {
        undo(netlink, &view, &owned).await?;
        log::info!(
            "reverted: {}",
            owned.item.undo_command(owned.previous.as_deref())
        );
        file.save(state)?;
    }
    Ok(())
}

/// Undoes one owned item if it is still there (a sysctl gets its previous
/// value back, unless its interface is gone and took it along).
async fn undo(netlink: &Netlink, view: &HostView, owned: &Owned) -> Result<(), HostError> {
    let present = match view.status(&owned.item)?.0 {
        Status::Absent => false,
        status => matches!(owned.item, Item::Sysctl { .. }) || status == Status::InPlace,
    };
    if present {
        unmake(netlink, owned).await?;
    }
    Ok(())
}

/// What one drift repair did.
#[derive(Debug, Default)]
pub struct Repair {
    /// Items put back.
    pub repaired: Vec<Item>,
    /// Items it could not put back, each with why: something else holds the
    /// place (vip does not replace what it did not add), or making it
    /// failed. The others were repaired all the same.
    pub problems: Vec<String>,
}

/// Puts back every owned item that is no longer in place, and sets the
/// sysctls that were wanted while their interface was gone once it is back
/// (recording the values they replace).
pub async fn repair(
    netlink: &Netlink,
    state: &mut State,
    file: &StateFile,
) -> Result<Repair, HostError> {
    let view = HostView::read(netlink, state).await?;
    let mut outcome = Repair::default();
    for index in 0..state.owned.len() {
        let owned = &state.owned[index];
        let (status, current) = view.status(&owned.item)?;
        let deferred = owned.is_waiting();
        let item = owned.item.clone();
        match status {
            // Its interface is gone; repaired once it is back.
            Status::Absent => continue,
            Status::InPlace if !deferred => continue,
            Status::InPlace => {}
            Status::Conflict(reason) => {
                outcome.problems.push(format!(
                    "{item}: {reason}; vip does not replace what it did not add"
                ));
                continue;
            }
            Status::Missing => {
                if let Err(e) = make(netlink, &item).await {
                    outcome
                        .problems
                        .push(format!("{item}: {}", crate::errors::chain(&e)));
                    continue;
                }
            }
        }
        if deferred {
            log::info!("applied: {item} (its interface is back)");
            state.owned[index].previous = current;
            file.save(state)?;
        } else {
            log::warn!("drift: {item} was changed from outside; repaired");
            outcome.repaired.push(item);
        }
    }
    Ok(outcome)
}

/// Reverts the owned items `wanted` no longer asks for (a reload, or a start
/// with another config than the daemon before it, dropped them).
pub async fn revert_unwanted(
    netlink: &Netlink,
    state: &mut State,
    file: &StateFile,
    wanted: &[Item],
) -> Result<(), HostError> {
    let view = HostView::read(netlink, state).await?;
    let mut index = state.owned.len();
    while index > 0 {
        index -= 1;
        let owned = &state.owned[index];
        if wanted.iter().any(|w| w.same_target(&owned.item)) {
            continue;
        }
        let owned = state.owned.remove(index);
        undo(netlink, &view, &owned).await?;
        log::info!(
            "no longer wanted: {}",
            owned.item.undo_command(owned.previous.as_deref())
        );
        file.save(state)?;
    }
    Ok(())
}
