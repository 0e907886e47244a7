//! The datapath's memory as `vip run` logs it (and `vip check` prints it),
//! against the kernel's own accounting of the maps the daemon holds: the
//! `memlock` line of each map's fdinfo.

use std::collections::BTreeMap;

use vip_tests::{
    daemon::{Daemon, Instance},
    netns::Lab,
    root::require_root,
};
use vip_userspace::{datapath::footprint::Footprint, Config, Layout};

/// Each map the process holds a descriptor of, once: its id and the bytes
/// the kernel accounts for it.
fn maps_held(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut maps = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(text) = std::fs::read_to_string(entry.unwrap().path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if let (Some(id), Some(memlock)) = (field("map_id"), field("memlock")) {
            let kind = field("map_type").unwrap_or("?").to_string();
            maps.insert(id.parse().unwrap(), (kind, memlock.parse().unwrap()));
        }
    }
    maps
}

#[test]
fn the_logged_footprint_is_what_the_kernel_accounts_for_the_maps() {
    if !require_root("the_logged_footprint_is_what_the_kernel_accounts_for_the_maps") {
        return;
    }
    let lab = Lab::new("footprint");
    let instance = Instance::new("footprint");
    let config = format!(
        "interfaces = [\"{}\"]\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\nallow = [\"tcp/80\"]\n\
         [[range]]\nname = \"v6\"\ncidr = \"2001:db8::/64\"\n",
        Lab::SERVER_IF
    );
    let daemon = Daemon::start(&lab.server, &config, &instance);
    let layout = Layout::new(&Config::parse(&config, std::path::Path::new("footprint")).unwrap());
    let expected = Footprint::on_this_host(&layout).unwrap();
    let log = daemon.log();
    assert!(
        log.contains(&format!("creating the datapath's maps, {expected}\n")),
        "{log}"
    );
    let maps = maps_held(daemon.pid());
    let kernel: u64 = maps.values().map(|(_, bytes)| bytes).sum();
    let estimate = expected.total();
    println!(
        "estimate {estimate}, the kernel's count {kernel} over {} maps",
        maps.len()
    );
    // The kernel counts every map, its keys and values, and its own
    // bookkeeping (hash elements, trie nodes, array rounding), which the
    // estimate leaves out: about 5 MiB on a 2-CPU host, less in proportion
    // the more CPUs (the per-CPU tables are counted in full).
    assert!(
        kernel >= estimate,
        "the estimate must not promise less than the kernel takes: {kernel} < {estimate}"
    );
    assert!(
        kernel <= estimate + estimate / 4,
        "the estimate is off by more than a quarter: {kernel} vs {estimate} ({maps:?})"
    );
    daemon.stop();
}
