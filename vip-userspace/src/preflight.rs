//! What a command checks before it changes anything: the config file, that it
//! fits a datapath, and that its interfaces exist on this host.

use std::path::Path;

use crate::{
    config::{Config, ConfigError},
    host::interfaces::{self, UnknownInterface},
    layout::{Layout, LayoutError},
};

/// What the config is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `vip check`, `plan`, `apply`: the host state alone.
    Host,
    /// `vip run` and its reloads: also interfaces to attach to and ranges.
    Run,
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Interface(#[from] UnknownInterface),
}

impl crate::errors::Blame for PreflightError {
    /// Each is about the config the operator wrote, on this host.
    fn is_user_error(&self) -> bool {
        true
    }
}

/// Reads `path` and checks it for `purpose`.
pub fn config(path: &Path, purpose: Purpose) -> Result<Config, PreflightError> {
    config_waiting(path, purpose, &[])
}

/// [`config`] for a running daemon's reload: the interfaces in `waiting`
/// (attached, and gone until they are created again) may be missing.
pub fn config_waiting(
    path: &Path,
    purpose: Purpose,
    waiting: &[String],
) -> Result<Config, PreflightError> {
    let config = Config::load(path)?;
    if purpose == Purpose::Run {
        config.check_runnable()?;
    }
    Layout::check(&config)?;
    interfaces::check(&config, waiting)?;
    Ok(config)
}
