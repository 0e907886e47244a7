//! vip: the virtual-CIDR acceptor. Library half of the `vip` binary, also used by
//! the integration tests and the bench.

pub mod cli;
pub mod config;
pub mod datapath;
pub mod host;
pub mod layout;
pub mod metrics;
pub mod netns;
pub mod run_files;
pub mod stats;
pub mod status;
pub mod steer;

pub use config::{Config, ConfigError};
pub use datapath::{pin::PinError, Datapath, DatapathError};
pub use layout::Layout;

/// An error and its sources on one line, as `anyhow`'s `{:#}` prints them, less
/// a source that only repeats the line before it (aya's syscall errors do).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if parts.last() != Some(&part) {
            parts.push(part);
        }
        source = cause.source();
    }
    parts.join(": ")
}
