//! Reading the datapath's counters into a [`Report`], from the pins of a running
//! daemon or from a datapath loaded in this process.

mod cpu_sum;
mod datapath;
pub mod rates;
mod read;
mod render;
mod select;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use cpu_sum::reader_threads;
pub use datapath::datapath;
pub use read::{attachments, collect, read, steering, vip_ip, StatsError};
pub use render::table;
pub use select::{SelectError, Selection};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// When the counters were read (RFC 3339, UTC); set by `vip stats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    pub ranges: Vec<RangeReport>,
    pub global: GlobalReport,
    pub attachments: Vec<AttachReport>,
    /// Host state put back by `vip run` after it changed from outside, by kind.
    #[serde(default)]
    pub drift_repairs: std::collections::BTreeMap<String, u64>,
    /// Owned host state `vip run` could not put back, each with why.
    #[serde(default)]
    pub drift_unrepaired: Vec<String>,
    /// Steer targets, whether each is up, and the lookups steered to it.
    #[serde(default)]
    pub steer: Vec<SteerReport>,
    /// Each announced range's BGP phase and health checks (`[bgp]` only).
    #[serde(default)]
    pub bgp: Vec<crate::status::AnnounceStatus>,
    /// The BGP speaker's session with each neighbor.
    #[serde(default)]
    pub bgp_sessions: Vec<crate::status::Session>,
    /// Which build's programs run, and their ids.
    #[serde(default)]
    pub datapath: DatapathReport,
    /// How full the sparse VIP table is, per CPU.
    #[serde(default)]
    pub sparse_table: SparseTableReport,
}

/// The sparse VIP table as a whole: each CPU has a copy of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparseTableReport {
    /// Slots per CPU.
    pub slots: u64,
    /// Slots holding a VIP of a configured range, per CPU.
    pub used_per_cpu: Vec<u64>,
    /// Of those, the slots whose VIP has seen no packet on that CPU for
    /// `sparse_idle_seconds`: the next new VIP that probes one takes it over.
    /// After a scan the table stays full of them until new VIPs come.
    #[serde(default)]
    pub idle_per_cpu: Vec<u64>,
    /// Whether the table's hash has a key (a datapath upgraded from layout 6
    /// or older keeps the unkeyed hash until it is started afresh).
    pub keyed: bool,
    /// Which hash places the VIPs: `multiply` for a datapath created by this
    /// vip, `fmix` for one created by layout 9 or older and upgraded in place
    /// (it keeps its hash, so its rows stay where they are).
    #[serde(default)]
    pub hash: String,
    /// The sweep generation (moves every half `sparse_idle_seconds`).
    pub generation: u32,
}

impl SparseTableReport {
    /// Used slots over slots on the fullest CPU, 0 to 1.
    pub fn fullest_cpu_ratio(&self) -> f64 {
        let fullest = self.used_per_cpu.iter().copied().max().unwrap_or(0);
        if self.slots == 0 {
            return 0.0;
        }
        fullest as f64 / self.slots as f64
    }

    /// Slots of VIPs that are not idle over slots, on the CPU with the most
    /// of them, 0 to 1: near 1, a new VIP finds no slot it may take.
    pub fn fullest_cpu_busy_ratio(&self) -> f64 {
        let busiest = self
            .used_per_cpu
            .iter()
            .enumerate()
            .map(|(cpu, used)| {
                used.saturating_sub(self.idle_per_cpu.get(cpu).copied().unwrap_or(0))
            })
            .max()
            .unwrap_or(0);
        if self.slots == 0 {
            return 0.0;
        }
        busiest as f64 / self.slots as f64
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatapathReport {
    /// The running programs' build id (`unknown` when none was recorded).
    pub build: String,
    /// The maps' layout version.
    pub layout_version: u32,
    /// In-place upgrades (programs replaced by another build's) since the
    /// datapath was first attached.
    pub upgrades: u32,
    /// The attached programs (read from the pinned links; none for a datapath
    /// loaded in this process and not pinned).
    pub programs: Vec<ProgramReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramReport {
    /// `vip_xdp`, `vip_tc` or `vip_sk_lookup`.
    pub program: String,
    /// The interface, or `netns` for the sk_lookup program.
    pub attached_to: String,
    /// The kernel's program id.
    pub id: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteerReport {
    pub range: String,
    #[serde(rename = "match")]
    pub matches: String,
    pub to: String,
    pub up: bool,
    /// Socket lookups assigned to the target: new TCP connections, UDP datagrams.
    pub packets: u64,
    /// The same, per VIP.
    pub vips: Vec<SteeredVipReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteeredVipReport {
    pub addr: IpAddr,
    pub packets: u64,
}

/// `packets` and `bytes` are what was accepted; `dropped_*` what the allow list
/// dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeReport {
    pub name: String,
    pub cidr: String,
    pub packets: u64,
    pub bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    /// Packets counted in the range but in no VIP: every slot their address
    /// could take in the sparse VIP table was busy.
    pub sparse_overflow_packets: u64,
    /// Sparse ranges only: reclaim and learning in the sparse VIP table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse: Option<SparsePressure>,
    /// Socket lookups for the range's VIPs that reached a socket vip knows of
    /// (steered to its target, or with no steer entry): every UDP datagram and the
    /// first packet of every TCP connection. Accepted packets that never get here
    /// were lost on the way (no route, rp_filter, a steer target down).
    #[serde(default)]
    pub delivered_packets: u64,
    /// VIPs that saw traffic, by address (busiest first under `--top`).
    pub vips: Vec<VipReport>,
    /// VIP rows `vip stats --top` left out (still in the range's totals).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vips_omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A sparse range's share of the sparse VIP table. Its totals include
/// `reclaimed_packets` and `unlearned_packets`, which are in no VIP row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparsePressure {
    /// Slots holding this range's VIPs, per CPU.
    pub slots_per_cpu: Vec<u64>,
    /// Slots its VIPs took, and slots of its idle VIPs taken over since.
    pub slots_learned: u64,
    pub slots_reclaimed: u64,
    /// Packets (accepted and dropped) of VIPs whose rows were reclaimed.
    pub reclaimed_packets: u64,
    /// Packets to addresses the range does not learn (`learn = false`).
    pub unlearned_packets: u64,
    /// Its declared VIPs (listed in `vips` whether or not they saw traffic).
    pub declared_vips: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipReport {
    pub addr: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    /// A declared VIP: its row is never reclaimed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub declared: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalReport {
    pub packets: u64,
    pub non_vip_packets: u64,
    pub malformed_packets: u64,
    pub internal_errors: u64,
    /// Non-first fragments let through to ranges with an allow list.
    pub fragments: u64,
    /// Tunnelled packets passed on as their inner packet, by tunnel (also in
    /// their inner VIP's accepted count).
    #[serde(default)]
    pub decapsulated: Decapsulated,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decapsulated {
    pub ipip: u64,
    pub ip6ip6: u64,
    pub gue: u64,
}

impl Decapsulated {
    /// (tunnel name as in the config, packets).
    pub fn by_encap(&self) -> [(&'static str, u64); 3] {
        [
            ("ipip", self.ipip),
            ("ip6ip6", self.ip6ip6),
            ("gue", self.gue),
        ]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachReport {
    pub interface: String,
    pub mode: String,
    /// The mode is a fallback from the one tried first.
    pub fallback: bool,
}

impl Report {
    pub fn range(&self, name: &str) -> Option<&RangeReport> {
        self.ranges.iter().find(|r| r.name == name)
    }
}

impl RangeReport {
    pub fn vip(&self, addr: IpAddr) -> Option<&VipReport> {
        self.vips.iter().find(|v| v.addr == addr)
    }

    /// The `max` VIPs with the most packets (accepted and dropped), busiest
    /// first, ties by address: the rows of `vip stats --top` and the per-VIP
    /// series of the metrics.
    pub fn busiest(&self, max: usize) -> Vec<&VipReport> {
        if max == 0 {
            return Vec::new(); // no sort of a whole range's VIPs for nothing
        }
        let mut vips: Vec<&VipReport> = self.vips.iter().collect();
        vips.sort_by(|a, b| {
            (b.packets + b.dropped_packets)
                .cmp(&(a.packets + a.dropped_packets))
                .then(a.addr.cmp(&b.addr))
        });
        vips.truncate(max);
        vips
    }

    fn add(&mut self, verdicts: &vip_common::Verdicts) {
        self.packets += verdicts.accepted.packets;
        self.bytes += verdicts.accepted.bytes;
        self.dropped_packets += verdicts.dropped.packets;
        self.dropped_bytes += verdicts.dropped.bytes;
    }

    /// Adds a VIP's counters to the range, and lists the VIP if it saw
    /// traffic or is declared.
    fn add_vip(&mut self, addr: IpAddr, verdicts: &vip_common::Verdicts, declared: bool) {
        self.add(verdicts);
        if declared || verdicts.accepted.packets + verdicts.dropped.packets > 0 {
            self.vips.push(VipReport {
                addr,
                packets: verdicts.accepted.packets,
                bytes: verdicts.accepted.bytes,
                dropped_packets: verdicts.dropped.packets,
                dropped_bytes: verdicts.dropped.bytes,
                declared,
            });
        }
    }
}
