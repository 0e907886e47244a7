//! vip: the virtual-CIDR acceptor. Library half of the `vip` binary, also used by
//! the integration tests and the bench.

pub mod config;
pub mod datapath;
pub mod layout;
pub mod stats;

pub use config::{Config, ConfigError};
pub use datapath::{pin::PinError, Datapath, DatapathError};
pub use layout::Layout;
