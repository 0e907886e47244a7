//! vip: the virtual-CIDR acceptor. Library half of the `vip` binary, also used by
//! the integration tests and the bench.

pub mod bgp;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod datapath;
pub mod errors;
pub mod fault;
pub mod host;
pub mod layout;
pub mod metrics;
pub mod netns;
pub mod preflight;
pub mod run_files;
pub mod run_lock;
pub mod stats;
pub mod status;
pub mod steer;

pub use config::{Config, ConfigError};
pub use datapath::{pin::PinError, Datapath, DatapathError, Loaded};
pub use layout::Layout;
