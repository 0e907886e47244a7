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

/// The index of each of the config's interfaces, checked before anything changes.
pub fn check(config: &Config) -> Result<Vec<u32>, UnknownInterface> {
    config
        .interfaces
        .iter()
        .map(|name| {
            nix::net::if_::if_nametoindex(name.as_str())
                .map_err(|_| UnknownInterface { name: name.clone() })
        })
        .collect()
}
