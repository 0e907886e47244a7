//! Test hooks. With `VIP_FAULT_AT=STEP` in its environment, vip kills itself
//! with SIGKILL when it reaches the named step, as a crash there would. The
//! steps are the points of an in-place upgrade (`datapath::upgrade`),
//! `reload-list-retired`: a reload (or an upgrade's sync) has just retired an
//! allow list no range uses any more (`datapath::sync`), and `start-pinning`:
//! a fresh start has pinned its links and every map but the last
//! (`datapath::Loaded::pin`).
//!
//! With `VIP_FAULT_FAIL=STEP`, vip fails with an error the first time it
//! reaches the step instead, as a map write refused by the kernel would. The
//! steps are `sync-indexes-written`: a reload's (or an adopting start's)
//! sync has written its new ranges and the indexes, and not yet removed
//! the ranges it drops (`datapath::sync`); and `reload-moved`: a reload has
//! moved the maps all the way and not yet changed the host state
//! (`daemon::serve`).
//!
//! With `VIP_FAULT_PAUSE=STEP`, vip sleeps [`PAUSE`] at the step, as a slow
//! start would. The step is `start-locked`: `vip run` holds the run
//! directory's lock and has recorded nothing yet (`daemon::Daemon::start`).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// The environment variable that names the step to die at.
pub const VARIABLE: &str = "VIP_FAULT_AT";
/// The environment variable that names the step to fail at, once.
pub const FAIL_VARIABLE: &str = "VIP_FAULT_FAIL";
/// The environment variable that names the step to pause at.
pub const PAUSE_VARIABLE: &str = "VIP_FAULT_PAUSE";
/// How long a pause lasts.
pub const PAUSE: Duration = Duration::from_secs(3);

/// Dies here when `VIP_FAULT_AT` names `step`.
pub fn at(step: &str) {
    if std::env::var(VARIABLE).is_ok_and(|wanted| wanted == step) {
        log::warn!("{VARIABLE}={step}: killing this process here");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

static FAILED: AtomicBool = AtomicBool::new(false);

/// Whether to fail here: `VIP_FAULT_FAIL` names `step`, and this process
/// has not failed at it yet.
pub fn fails(step: &str) -> bool {
    if !std::env::var(FAIL_VARIABLE).is_ok_and(|wanted| wanted == step) {
        return false;
    }
    let first = !FAILED.swap(true, Ordering::Relaxed);
    if first {
        log::warn!("{FAIL_VARIABLE}={step}: failing here");
    }
    first
}

/// Sleeps [`PAUSE`] here when `VIP_FAULT_PAUSE` names `step`.
pub fn pause(step: &str) {
    if std::env::var(PAUSE_VARIABLE).is_ok_and(|wanted| wanted == step) {
        log::warn!(
            "{PAUSE_VARIABLE}={step}: pausing {} s here",
            PAUSE.as_secs()
        );
        std::thread::sleep(PAUSE);
    }
}
