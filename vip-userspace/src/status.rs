//! The status file: what the running daemon sees (its steer targets, the drift
//! it repaired, each announced range's BGP phase), written by `vip run` and read by `vip stats` and the exporter
//! through [`crate::stats::collect`]. A leaf: the host-only commands never need it.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::run_files::{RunFile, RunFileKind};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Steer targets and whether each is up, as the daemon last saw them.
    pub steer: Vec<SteerStatus>,
    /// Host state put back after it changed from outside, by item kind.
    pub drift_repairs: BTreeMap<String, u64>,
    /// Owned host state the last drift repair could not put back, each with
    /// why (this daemon's only: a start clears it).
    #[serde(default)]
    pub drift_unrepaired: Vec<String>,
    /// Each announced range's phase and health checks (empty without `[bgp]`).
    #[serde(default)]
    pub bgp: Vec<AnnounceStatus>,
    /// The speaker's session with each neighbor.
    #[serde(default)]
    pub bgp_sessions: Vec<Session>,
    /// How the daemon's reloads went, for `vip reload` to report; `None` in
    /// the file of a vip that did not record them.
    #[serde(default)]
    pub reloads: Option<Reloads>,
}

/// The reloads of the daemons of this run directory so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloads {
    /// Reloads done, whatever their outcome.
    pub count: u64,
    pub last: Option<ReloadOutcome>,
}

/// How one reload went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    pub result: ReloadResult,
    /// What the daemon logged about it.
    pub message: String,
    /// Refused for the operator's reason (e.g. a config that does not
    /// validate), not the host's.
    pub user_error: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    Reloaded,
    /// Nothing changed; the daemon runs the previous config.
    Refused,
    /// The datapath holds part of it; the next reload or start moves on.
    FailedHalfWay,
}

impl RunFileKind for Status {
    const FILE: &'static str = "status.json";
    const WHAT: &'static str = "status file";
    const VERSION: u32 = 1;
}

pub type StatusFile = RunFile<Status>;

/// A steer target as `vip stats` and the metrics show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteerStatus {
    pub range: String,
    #[serde(rename = "match")]
    pub matches: String,
    pub to: String,
    /// The entry's index in the steer maps.
    pub entry: u32,
    pub up: bool,
}

/// A range's BGP announcement (`crate::bgp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Withdrawn,
    Announced,
    /// Announced with the graceful-shutdown community, until withdrawn.
    Draining,
}

/// A range's announcement as `vip stats` and the metrics show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceStatus {
    pub range: String,
    pub cidr: IpNet,
    pub phase: Phase,
    /// Why it is not simply announced ("" when it is).
    pub reason: String,
    /// Changes of phase since the daemon started.
    pub transitions: u64,
    pub health: Vec<HealthStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStatus {
    pub check: String,
    pub up: bool,
    /// Why its last probe failed, while it is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub transitions: u64,
}

/// A neighbor's BGP session as the speaker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub neighbor: std::net::IpAddr,
    pub established: bool,
    /// The speaker's own words: `Established`, `Active`, `Error: No listening socket`.
    pub info: String,
}
