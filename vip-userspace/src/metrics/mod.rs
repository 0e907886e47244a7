//! Prometheus metrics: what a scrape shows ([`exposition`]) and the HTTP server
//! inside `vip run` ([`server`]).

mod exposition;
pub mod server;

use std::collections::HashMap;

pub use exposition::{encode, Format, Snapshot};

use crate::Config;

/// Which ranges export per-VIP series, and how many; from the config, replaced
/// on reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesPolicy {
    /// Range name -> the most per-VIP series it may export (absent or 0: none).
    per_range: HashMap<String, u32>,
}

impl SeriesPolicy {
    pub fn from_config(config: &Config) -> SeriesPolicy {
        SeriesPolicy {
            per_range: config
                .ranges
                .iter()
                .filter(|r| r.per_vip_metrics)
                .map(|r| (r.name.clone(), r.max_vip_series))
                .collect(),
        }
    }

    pub fn max_vip_series(&self, range: &str) -> usize {
        self.per_range.get(range).copied().unwrap_or(0) as usize
    }
}
