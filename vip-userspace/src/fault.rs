//! A test hook: with `VIP_FAULT_AT=STEP` in its environment, vip kills itself
//! with SIGKILL when it reaches the named step, as a crash there would. The
//! steps are the points of an in-place upgrade (`datapath::upgrade`), and
//! `reload-list-retired`: a reload (or an upgrade's sync) has just retired an
//! allow list no range uses any more (`datapath::sync`).

/// The environment variable that names the step.
pub const VARIABLE: &str = "VIP_FAULT_AT";

/// Dies here when `VIP_FAULT_AT` names `step`.
pub fn at(step: &str) {
    if std::env::var(VARIABLE).is_ok_and(|wanted| wanted == step) {
        log::warn!("{VARIABLE}={step}: killing this process here");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
