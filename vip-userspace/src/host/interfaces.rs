//! The config's interfaces on this host.

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
#[error("unknown interface {name:?}{of}")]
pub struct UnknownInterface {
    pub name: String,
    /// What names it, when not `interfaces`.
    pub of: String,
}

impl crate::errors::Blame for UnknownInterface {
    fn is_user_error(&self) -> bool {
        true
    }
}

/// Checks, before anything changes, that each of the config's interfaces
/// exists, but for those in `waiting`: interfaces a running daemon is
/// attached to and waits for while they are gone (deleted, to be created
/// again), which its reload keeps. A route's interface must exist too.
pub fn check(config: &Config, waiting: &[String]) -> Result<(), UnknownInterface> {
    let exists = |name: &str| nix::net::if_::if_nametoindex(name).is_ok();
    for name in &config.interfaces {
        if !exists(name) && !waiting.contains(name) {
            return Err(UnknownInterface {
                name: name.clone(),
                of: String::new(),
            });
        }
    }
    for route in &config.routes {
        if let Some(dev) = route.dev.as_deref().filter(|d| !exists(d)) {
            return Err(UnknownInterface {
                name: dev.to_string(),
                of: format!(" (the dev of route {})", route.cidr),
            });
        }
    }
    Ok(())
}
