//! One module per group of subcommands, and how a command fails.

mod drain;
mod host;
mod run;
mod stats;
mod watch;

use std::error::Error;

pub use drain::drain;
pub use host::{apply, down, plan};
pub use run::{reload, run};
pub use stats::stats;
pub use watch::watch;

use vip_userspace::{
    datapath::footprint::Footprint,
    errors::Blame,
    layout::Layout,
    preflight::{self, Purpose},
};

/// A command's failure: the error, and whether it is the operator's (exit
/// status 2) or the host's (1), as its type says through [`Blame`].
pub struct Failure {
    pub error: Box<dyn Error + Send + Sync>,
    pub user: bool,
}

impl<E: Blame + Error + Send + Sync + 'static> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure {
            user: error.is_user_error(),
            error: Box::new(error),
        }
    }
}

/// A failure of the host, said as what vip was doing.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
struct HostFailure {
    what: &'static str,
    #[source]
    source: Box<dyn Error + Send + Sync>,
}

/// `.context("what vip was doing")` for errors of other crates: a host failure.
trait Context<T> {
    fn context(self, what: &'static str) -> Result<T, Failure>;
}

impl<T, E: Error + Send + Sync + 'static> Context<T> for Result<T, E> {
    fn context(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|source| Failure {
            error: Box::new(HostFailure {
                what,
                source: Box::new(source),
            }),
            user: false,
        })
    }
}

/// vip's async work (netlink, signals, timers) runs on one thread.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

pub fn check(config_path: &std::path::Path) -> Result<(), Failure> {
    let config = preflight::config(config_path, Purpose::Host)?;
    // As `vip run` does before any change (the run directory plays no part).
    if let Some(bgp) = &config.bgp {
        vip_userspace::bgp::bird::Bird::locate(bgp, std::path::Path::new("/"))?;
    }
    println!(
        "{}: ok ({} ranges, {} routes, {} interfaces)",
        config_path.display(),
        config.ranges.len(),
        config.routes.len(),
        config.interfaces.len()
    );
    // What `vip run` will take from the host, allocated whatever the traffic.
    if !config.interfaces.is_empty() {
        let layout = Layout::new(&config);
        if let Some(footprint) = Footprint::on_this_host(&layout) {
            println!("  datapath memory for vip run: {footprint}");
        }
    }
    // Nesting is allowed, so a typo in a CIDR may nest a range by accident:
    // say which ranges take addresses from which.
    let parents = vip_userspace::config::nesting::parents(&config.ranges);
    for (inner, outer) in parents.iter().enumerate() {
        if let Some(outer) = *outer {
            let (inner, outer) = (&config.ranges[inner], &config.ranges[outer]);
            println!(
                "  range {:?} ({}) lies in range {:?} ({}) and judges and counts its own addresses",
                inner.name, inner.cidr, outer.name, outer.cidr
            );
        }
    }
    Ok(())
}
