//! The host state of the seed recipe (loopback alias or AnyIP route, router
//! route, ARP and forwarding sysctls): planned, applied, repaired and reverted
//! through netlink and /proc/sys.

pub mod apply;
pub mod interfaces;
pub mod items;
pub mod kernel;
pub mod netlink;
pub mod plan;
pub mod state;
pub mod sysctl;

pub use items::{desired, Item};
pub use netlink::Netlink;
pub use plan::{HostView, SafetyError, Status, Step};
pub use state::{State, StateFile};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error(transparent)]
    Sysctl(#[from] sysctl::SysctlError),
    #[error(transparent)]
    State(#[from] crate::run_files::RunFileError),
    #[error(transparent)]
    Safety(#[from] SafetyError),
}

impl crate::errors::Blame for HostError {
    fn is_user_error(&self) -> bool {
        match self {
            HostError::Safety(_) => true,
            HostError::State(e) => e.is_user_error(),
            HostError::Netlink(_) | HostError::Sysctl(_) => false,
        }
    }
}
