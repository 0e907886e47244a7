//! The config's interfaces on this host.

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
#[error("unknown interface {name:?}")]
pub struct UnknownInterface {
    pub name: String,
}

impl crate::errors::Blame for UnknownInterface {
    fn is_user_error(&self) -> bool {
        true
    }
}

/// Checks, before anything changes, that each of the config's interfaces
/// exists, but for those in `waiting`: interfaces a running daemon is
/// attached to and waits for while they are gone (deleted, to be created
/// again), which its reload keeps.
pub fn check(config: &Config, waiting: &[String]) -> Result<(), UnknownInterface> {
    for name in &config.interfaces {
        if nix::net::if_::if_nametoindex(name.as_str()).is_err() && !waiting.contains(name) {
            return Err(UnknownInterface { name: name.clone() });
        }
    }
    Ok(())
}
