//! Bad input to `vip run`: one line naming the problem, exit status 2, and
//! nothing loaded, attached or pinned. And what `vip check` says of a good one.

use vip_tests::{
    daemon::{vip_bin, Instance},
    netns::Lab,
    root::require_root,
};
use vip_userspace::{datapath::footprint::Footprint, Config, Layout};

const GOOD_RANGE: &str = "[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\n";

fn with_iface(body: &str) -> String {
    format!("interfaces = [\"{}\"]\n{body}", Lab::SERVER_IF)
}

fn range(name: &str, cidr: &str) -> String {
    format!("[[range]]\nname = \"{name}\"\ncidr = \"{cidr}\"\n")
}

/// (case, config text or None for a missing file, what the error line must say).
fn cases() -> Vec<(&'static str, Option<String>, &'static str)> {
    vec![
        (
            "prefix too long",
            Some(with_iface(&range("web", "192.0.2.0/33"))),
            "invalid CIDR \"192.0.2.0/33\"",
        ),
        (
            "not a CIDR",
            Some(with_iface(&range("web", "192.0.2.x/24"))),
            "invalid CIDR \"192.0.2.x/24\"",
        ),
        (
            "host bits set",
            Some(with_iface(&range("web", "192.0.2.1/24"))),
            "192.0.2.1/24 has host bits set (did you mean 192.0.2.0/24?)",
        ),
        (
            "IPv6 host bits set",
            Some(with_iface(&range("v6", "2001:db8::1/64"))),
            "has host bits set (did you mean 2001:db8::/64?)",
        ),
        (
            "duplicate names",
            Some(with_iface(&format!(
                "{GOOD_RANGE}{}",
                range("web", "198.51.100.0/24")
            ))),
            "range \"web\" is defined twice",
        ),
        (
            "two ranges with one CIDR",
            Some(with_iface(&format!(
                "{GOOD_RANGE}{}",
                range("again", "192.0.2.0/24")
            ))),
            "ranges \"web\" and \"again\" have the same CIDR 192.0.2.0/24",
        ),
        (
            "a sparse IPv6 range inside another",
            Some(with_iface(&format!(
                "{}{}",
                range("v6", "2001:db8:1::/64"),
                range("inner", "2001:db8:1::/96")
            ))),
            "range \"inner\" (2001:db8:1::/96) lies in range \"v6\" (2001:db8:1::/64): an IPv6 range inside another must count per VIP densely",
        ),
        (
            "unknown interface",
            Some(format!("interfaces = [\"nosuch0\"]\n{GOOD_RANGE}")),
            "unknown interface \"nosuch0\"",
        ),
        (
            "unknown key",
            Some(with_iface(&format!("{GOOD_RANGE}colour = \"red\"\n"))),
            "unknown field `colour`",
        ),
        ("missing file", None, "cannot read config"),
    ]
}

#[test]
fn bad_input_is_one_line_exit_2_and_changes_nothing() {
    if !require_root("bad_input_is_one_line_exit_2_and_changes_nothing") {
        return;
    }
    let lab = Lab::new("cli");
    let dir = tempfile::tempdir().expect("temp dir");
    for (case, config, message) in cases() {
        let path = dir.path().join(format!("{}.toml", case.replace(' ', "-")));
        if let Some(text) = &config {
            std::fs::write(&path, text).expect("writing config");
        }
        let instance = Instance::new("cli");
        let out = instance.vip(&lab.server, &["run", "--config", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{case}: exit status; stderr: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{case}: one line, got: {stderr}");
        assert!(stderr.starts_with("vip: error: "), "{case}: {stderr}");
        assert!(
            stderr.contains(message),
            "{case}: {stderr:?} should say {message:?}"
        );
        let parts: Vec<&str> = stderr.trim_end().split(": ").collect();
        let distinct: std::collections::BTreeSet<&str> = parts.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            parts.len(),
            "{case}: a cause repeated: {stderr}"
        );
        assert!(!instance.pin_dir().exists(), "{case}: nothing pinned");
        assert!(!instance.state_file().exists(), "{case}: no state written");
        assert!(
            !lab.server.has_xdp(Lab::SERVER_IF),
            "{case}: nothing attached"
        );
    }
}

#[test]
fn stats_without_a_daemon_says_so() {
    let instance = Instance::new("nodaemon");
    let out = std::process::Command::new(vip_bin())
        .arg("--pin-dir")
        .arg(instance.pin_dir())
        .args(["stats", "--json"])
        .output()
        .expect("running vip");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no vip datapath is pinned at"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// `vip check` passes a config with ranges inside ranges and names each one,
/// since a typo in a CIDR can nest a range without meaning to; it says what
/// memory `vip run` will take for the datapath on this host.
#[test]
fn check_names_the_ranges_inside_ranges() {
    if !require_root("check_names_the_ranges_inside_ranges") {
        return;
    }
    let lab = Lab::new("clinest");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested.toml");
    let text = with_iface(&format!(
        "{}{GOOD_RANGE}{}{}",
        range("pair", "192.0.2.70/31"),
        range("quarter", "192.0.2.64/26"),
        range("api", "198.51.100.0/24")
    ));
    std::fs::write(&path, &text).expect("writing config");
    let instance = Instance::new("clinest");
    let out = instance.vip_ok(&lab.server, &["check", "--config", path.to_str().unwrap()]);
    let config = Config::parse(&text, &path).unwrap();
    let footprint = Footprint::on_this_host(&Layout::new(&config)).unwrap();
    assert_eq!(footprint.per_cpu[0], ("sparse VIP table", 131_072 * 80));
    assert_eq!(
        out,
        format!(
            "{}: ok (4 ranges, 0 routes, 1 interfaces)\n  \
             datapath memory for vip run: {footprint}\n  \
             range \"pair\" (192.0.2.70/31) lies in range \"quarter\" (192.0.2.64/26) and judges and counts its own addresses\n  \
             range \"quarter\" (192.0.2.64/26) lies in range \"web\" (192.0.2.0/24) and judges and counts its own addresses\n",
            path.display()
        )
    );
}
