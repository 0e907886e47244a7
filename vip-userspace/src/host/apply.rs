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
        Item::Route { cidr, via } => netlink.add_route(*cidr, *via).await?,
        Item::Sysctl { key, value } => sysctl::write(key, value)?,
    }
    Ok(())
}

async fn unmake(netlink: &Netlink, owned: &Owned) -> Result<(), HostError> {
    match &owned.item {
        Item::Alias { cidr, .. } => netlink.del_alias(*cidr).await?,
        Item::LocalRoute { cidr } => netlink.del_local_route(*cidr).await?,
        Item::Route { cidr, via } => netlink.del_route(*cidr, *via).await?,
        Item::Sysctl { key, .. } => {
            if let Some(previous) = &owned.previous {
                sysctl::write(key, previous)?;
            }
        }
    }
    Ok(())
}

/// Makes every missing step, recording each in the state file as soon as it is
/// made. On a failure, undoes this call's changes and returns the error.
pub async fn apply(
    netlink: &Netlink,
    steps: &[Step],
    state: &mut State,
    file: &StateFile,
) -> Result<usize, HostError> {
    let before = state.owned.len();
    // An owned one is put back by the drift repair once its interface is.
    let unowned_absent = steps.iter().filter(|s| {
        s.status == Status::Absent && !state.owned.iter().any(|o| o.item.same_target(&s.item))
    });
    for step in unowned_absent {
        log::warn!(
            "{}: not on this host now (its interface is gone); the next reload or start after it is back applies it",
            step.item
        );
    }
    for step in steps.iter().filter(|s| s.status == Status::Missing) {
        let result = make(netlink, &step.item).await;
        if let Err(error) = result {
            let made = state.owned.split_off(before);
            for owned in made.iter().rev() {
                if let Err(e) = unmake(netlink, owned).await {
                    log::error!("undoing {}: {}", owned.item, crate::errors::chain(&e));
                }
            }
            file.save(state)?;
            return Err(error);
        }
        log::info!("applied: {}", step.item);
        state.owned.push(Owned {
            item: step.item.clone(),
            previous: step.current.clone(),
        });
        file.save(state)?;
    }
    Ok(state.owned.len() - before)
}

/// Reverts everything `state` owns, newest first, and forgets it. Items already
/// gone are skipped; sysctls get their previous values back.
pub async fn revert(
    netlink: &Netlink,
    state: &mut State,
    file: &StateFile,
) -> Result<(), HostError> {
    let view = HostView::read(netlink).await?;
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

/// Puts back every owned item that is no longer in place; returns the items
/// repaired.
pub async fn repair(netlink: &Netlink, state: &State) -> Result<Vec<Item>, HostError> {
    let view = HostView::read(netlink).await?;
    let mut repaired = Vec::new();
    let items: Vec<Item> = state.owned.iter().map(|o| o.item.clone()).collect();
    for item in items {
        // Absent: its interface is gone; repaired once it is back.
        if matches!(view.status(&item)?.0, Status::InPlace | Status::Absent) {
            continue;
        }
        make(netlink, &item).await?;
        log::warn!("drift: {} was changed from outside; repaired", item);
        repaired.push(item);
    }
    Ok(repaired)
}

/// Reverts the owned items `wanted` no longer asks for (a reload, or a start
/// with another config than the daemon before it, dropped them).
pub async fn revert_unwanted(
    netlink: &Netlink,
    state: &mut State,
    file: &StateFile,
    wanted: &[Item],
) -> Result<(), HostError> {
    let view = HostView::read(netlink).await?;
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
