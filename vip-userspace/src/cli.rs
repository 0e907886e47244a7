//! The `vip` command line, as clap derives it: parsed by the binary, and
//! rendered into man pages and shell completions by `vip-assets`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::netns;

/// vip: accept, count and police traffic to virtual CIDRs with XDP.
#[derive(Parser)]
#[command(name = "vip", version, about)]
pub struct Cli {
    /// Directory on bpffs where the daemon pins its maps and `vip stats` reads them
    /// (default: /sys/fs/bpf/vip in the initial network namespace,
    /// /sys/fs/bpf/vip-netns-INODE in another).
    #[arg(long, global = true, env = "VIP_PIN_DIR", default_value_os_t = netns::default_pin_dir(), hide_default_value = true)]
    pub pin_dir: PathBuf,

    /// Directory of vip's files: the state file (what vip changed on the host),
    /// the layout and the daemon's status (default: /run/vip in the initial network namespace, /run/vip/netns-INODE
    /// in another).
    #[arg(long, global = true, env = "VIP_RUN_DIR", default_value_os_t = netns::default_run_dir(), hide_default_value = true)]
    pub run_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply the host state, attach the datapath, count and repair drift until
    /// SIGINT or SIGTERM; then detach and revert what it changed. A datapath an
    /// earlier `vip run` left pinned (killed, or stopped with --keep-datapath) is
    /// adopted: it never stopped counting.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// On SIGINT or SIGTERM, exit leaving the datapath attached and counting,
        /// its maps and links pinned and the host state in place, for the next
        /// `vip run` (e.g. an upgrade) to adopt; `vip down` removes it all.
        #[arg(long)]
        keep_datapath: bool,
    },
    /// Validate a config file without changing anything.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the changes `apply` would make, as ip and sysctl commands; change nothing.
    Plan {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Install the config's addresses, routes and sysctls (idempotent), recording
    /// what changed in the state file.
    Apply {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask the running `vip run` to re-read its config and apply the difference
    /// (ranges, allow lists, host state, attachments) as SIGHUP does; waits for
    /// the outcome and prints it (exit 2 if the config was refused, 1 if the
    /// reload failed).
    Reload,
    /// Print per-range and per-VIP counters of the running datapath.
    Stats {
        /// Only these ranges (names as in the config), with their steer
        /// targets and BGP announcements; default: every range.
        ranges: Vec<String>,
        /// At most N VIP rows per range, busiest (most packets) first; the
        /// range's totals still count every VIP.
        #[arg(long, value_name = "N", conflicts_with = "watch", value_parser = clap::value_parser!(u32).range(1..))]
        top: Option<u32>,
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// A live table of packets, bits and drops per second by range and VIP,
        /// busiest first, refreshed every second; q, Esc or Ctrl-C quits.
        #[arg(long)]
        watch: bool,
    },
    /// Stop a running vip, revert exactly what the state file records (restoring
    /// sysctls) and remove the pins. Announced ranges are drained first
    /// (graceful shutdown, drain_seconds, withdraw). Running it twice is a no-op.
    Down,
    /// Take ranges out of the BGP announcement: tag them with the
    /// graceful-shutdown community (65535:0), wait bgp.drain_seconds, withdraw.
    /// Returns once they are withdrawn. They stay drained across restarts of
    /// vip run until `vip undrain`.
    Drain {
        /// Range names, as in the config.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ranges: Vec<String>,
        /// Every announced range.
        #[arg(long)]
        all: bool,
    },
    /// Undo `vip drain`: the ranges are announced again while healthy.
    Undrain {
        /// Range names, as in the config.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ranges: Vec<String>,
        /// Every range (also clears `vip drain --all`).
        #[arg(long)]
        all: bool,
    },
}
