//! The memory a datapath's maps take, from its layout: what `vip check`
//! prints and `vip run` logs before it creates them. The kernel allocates an
//! array map whole when it is created, and vip's per-VIP and per-range
//! counters once per possible CPU, so this is what the host gives up however
//! little traffic comes. Keys and values only: the kernel's bookkeeping per
//! hash entry and trie node comes on top (`tests/tests/footprint.rs` holds
//! the figure against the kernel's count), and the few small maps of a fixed
//! size (settings, global counters) are left out.

use std::fmt;

use vip_common::{
    cpu_table_stride, Counter, DeclaredVip, PortBitmap, RangeCounts, RangeMeta, RangePolicy,
    RangePressure, RangeStats, RangeValue, SparseCold, SparseHot, SparseSlot, SteeredVip,
    V4Slash24, V6Block, Verdicts, VipAddr, STEERED_VIPS, V4_L1_ENTRIES, V4_L2_BLOCK,
};

use super::{FROZEN_DENSE_SLOTS_PER_CPU, FROZEN_SLOTS_PER_CPU};
use crate::layout::Layout;

/// Bytes by part, per possible CPU and shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Possible CPUs (`/sys/devices/system/cpu/possible`), not only online ones.
    pub cpus: u32,
    pub per_cpu: Vec<(&'static str, u64)>,
    pub shared: Vec<(&'static str, u64)>,
}

fn bytes<T>(entries: u32) -> u64 {
    u64::from(entries) * size_of::<T>() as u64
}

impl Footprint {
    /// The maps of a datapath made for `layout` on a host with `cpus`
    /// possible CPUs, as `datapath::open` sizes them.
    pub fn of(layout: &Layout, cpus: u32) -> Footprint {
        let capacity = &layout.capacity;
        let ranges = capacity.ranges;
        let slash24s = (capacity.l2_blocks * V4_L2_BLOCK).max(1);
        let frozen = bytes::<SparseSlot>(FROZEN_SLOTS_PER_CPU)
            + bytes::<Verdicts>(FROZEN_DENSE_SLOTS_PER_CPU)
            + bytes::<RangeStats>(1)
            + bytes::<RangePressure>(1)
            + bytes::<u64>(1);
        Footprint {
            cpus,
            per_cpu: vec![
                (
                    "sparse VIP table",
                    bytes::<SparseHot>(layout.sparse_slots)
                        + bytes::<SparseCold>(layout.sparse_slots),
                ),
                ("dense VIP table", bytes::<Counter>(layout.dense_half() * 2)),
                (
                    "range counters",
                    bytes::<RangeCounts>(cpu_table_stride(ranges, size_of::<RangeCounts>() as u32)),
                ),
                ("steered-VIP counters", bytes::<u64>(STEERED_VIPS)),
                ("tables of older layouts", frozen),
            ],
            shared: vec![
                (
                    "allow-list port bitmaps",
                    bytes::<PortBitmap>(capacity.policies.saturating_mul(2).max(2)),
                ),
                (
                    "IPv4 index",
                    bytes::<u32>(V4_L1_ENTRIES)
                        + bytes::<u32>(slash24s)
                        + bytes::<V4Slash24>(slash24s),
                ),
                ("IPv6 blocks", bytes::<V6Block>(capacity.v6_blocks)),
                (
                    "ranges",
                    bytes::<RangeValue>(ranges) * 3
                        + bytes::<RangeMeta>(ranges)
                        + bytes::<RangePolicy>(ranges),
                ),
                (
                    "declared VIPs",
                    bytes::<VipAddr>(capacity.declared) + bytes::<DeclaredVip>(capacity.declared),
                ),
                ("steered-VIP keys", bytes::<SteeredVip>(STEERED_VIPS)),
            ],
        }
    }

    /// [`Footprint::of`] for this host's possible CPUs, if it can tell them.
    pub fn on_this_host(layout: &Layout) -> Option<Footprint> {
        let cpus = aya::util::nr_cpus().ok()?;
        Some(Footprint::of(layout, u32::try_from(cpus).ok()?))
    }

    pub fn per_cpu_bytes(&self) -> u64 {
        self.per_cpu.iter().map(|(_, n)| n).sum()
    }

    pub fn shared_bytes(&self) -> u64 {
        self.shared.iter().map(|(_, n)| n).sum()
    }

    pub fn total(&self) -> u64 {
        self.per_cpu_bytes() * u64::from(self.cpus) + self.shared_bytes()
    }
}

/// `TOTAL: X per CPU x N possible CPUs (part X, ...) + Y shared (part Y, ...)`,
/// parts of 0 bytes left out.
impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = |parts: &[(&str, u64)]| {
            parts
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| format!("{name} {}", Size(*n)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "{}: {} per CPU x {} possible CPUs ({}) + {} shared ({})",
            Size(self.total()),
            Size(self.per_cpu_bytes()),
            self.cpus,
            parts(&self.per_cpu),
            Size(self.shared_bytes()),
            parts(&self.shared)
        )
    }
}

/// Bytes in binary units, three significant digits: `10.0 MiB`, `768 KiB`.
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        match unit {
            0 => write!(f, "{} B", self.0),
            _ if value >= 100.0 => write!(f, "{value:.0} {}", UNITS[unit]),
            _ if value >= 10.0 => write!(f, "{value:.1} {}", UNITS[unit]),
            _ => write!(f, "{value:.2} {}", UNITS[unit]),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn layout(text: &str) -> Layout {
        Layout::new(&Config::parse(text, Path::new("test")).unwrap())
    }

    #[test]
    fn sizes_read_in_binary_units() {
        let shown: Vec<String> = [0, 1023, 1024, 1536, 10 << 20, 768 << 10, 5 << 30]
            .into_iter()
            .map(|n| Size(n).to_string())
            .collect();
        assert_eq!(
            shown,
            ["0 B", "1023 B", "1.00 KiB", "1.50 KiB", "10.0 MiB", "768 KiB", "5.00 GiB"]
        );
    }

    /// The default sparse table (65,536 VIPs: 131,072 slots of 32 + 48
    /// bytes) is 10 MiB per CPU, which a host pays once per possible CPU.
    #[test]
    fn the_sparse_table_is_paid_once_per_possible_cpu() {
        let layout =
            layout("interfaces = [\"lo\"]\n[[range]]\nname = \"v6\"\ncidr = \"2001:db8::/64\"\n");
        let two = Footprint::of(&layout, 2);
        let many = Footprint::of(&layout, 128);
        assert_eq!(two.per_cpu[0], ("sparse VIP table", 131_072 * 80));
        assert_eq!(two.per_cpu_bytes(), many.per_cpu_bytes());
        assert_eq!(two.shared, many.shared);
        assert_eq!(
            many.total() - two.total(),
            126 * two.per_cpu_bytes(),
            "each CPU more adds one CPU's share"
        );
        assert!(many.total() > 128 * (10 << 20));
        // README's example.
        assert!(
            many.to_string()
                .starts_with("1.57 GiB: 12.5 MiB per CPU x 128 possible CPUs ("),
            "{many}"
        );
    }

    /// An IPv6 /112 (or an IPv4 /16) is 65,536 dense slots: 2 MiB per CPU,
    /// a 16-byte counter per verdict.
    #[test]
    fn a_dense_slash112_is_two_mib_per_cpu() {
        let small =
            layout("interfaces = [\"lo\"]\n[[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\n");
        let big = layout("interfaces = [\"lo\"]\n[[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\n[[range]]\nname = \"b\"\ncidr = \"2001:db8:0:1::/112\"\n");
        let dense = |layout: &Layout| Footprint::of(layout, 1).per_cpu[1].1;
        assert_eq!(dense(&big) - dense(&small), 65_536 * 32);
    }

    /// README's "Memory": what a range, an allow list and a /16 of the IPv4
    /// index cost, and the room for reloads a fresh datapath starts with.
    #[test]
    fn each_range_list_and_slash16_costs_what_readme_says() {
        let part = |footprint: &Footprint, name: &str| {
            footprint
                .per_cpu
                .iter()
                .chain(&footprint.shared)
                .find(|(part, _)| *part == name)
                .unwrap()
                .1
        };
        let web = "interfaces = [\"lo\"]\n[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\n";
        let one = Footprint::of(&layout(web), 1);
        let two = Footprint::of(
            &layout(&format!(
                "{web}[[range]]\nname = \"api\"\ncidr = \"198.51.100.0/24\"\nallow = [\"tcp/80\"]\n"
            )),
            1,
        );
        assert_eq!(
            part(&one, "range counters"),
            9 * 4096,
            "1 range and room for 256, 128 bytes each in 4 KiB pages of 32"
        );
        assert_eq!(
            part(&two, "range counters"),
            part(&one, "range counters"),
            "a second range fits in the same page"
        );
        assert_eq!(
            part(&one, "allow-list port bitmaps"),
            256 << 10,
            "room for 16 lists"
        );
        assert_eq!(
            part(&two, "allow-list port bitmaps") - part(&one, "allow-list port bitmaps"),
            32 << 10,
            "a list's TCP and UDP bitmaps, twice (old and new across a reload)"
        );
        assert_eq!(
            part(&one, "IPv4 index"),
            (256 << 10) + 65 * (5 << 10),
            "1 /16 and room for 64"
        );
        assert_eq!(part(&two, "IPv4 index") - part(&one, "IPv4 index"), 5 << 10);
        assert_eq!(
            part(&one, "dense VIP table"),
            (65_536 + 256) * 32,
            "room for 65,536 dense VIPs, and the /24's 256"
        );
        assert_eq!(part(&one, "steered-VIP counters"), 512 << 10);
    }

    #[test]
    fn the_line_names_the_total_the_cpus_and_each_part() {
        let layout =
            layout("interfaces = [\"lo\"]\n[[range]]\nname = \"v6\"\ncidr = \"2001:db8::/64\"\n");
        // A fresh layout keeps room for what reloads may add: dense slots,
        // allow lists, IPv4 index blocks, declared VIPs.
        assert_eq!(
            Footprint::of(&layout, 4).to_string(),
            "52.7 MiB: 12.5 MiB per CPU x 4 possible CPUs (sparse VIP table 10.0 MiB, \
             dense VIP table 2.00 MiB, range counters 36.0 KiB, steered-VIP counters 512 KiB, \
             tables of older layouts 8.12 KiB) + 2.52 MiB shared (allow-list port bitmaps 256 KiB, \
             IPv4 index 576 KiB, IPv6 blocks 4.00 KiB, ranges 110 KiB, declared VIPs 96.0 KiB, \
             steered-VIP keys 1.50 MiB)"
        );
    }
}
