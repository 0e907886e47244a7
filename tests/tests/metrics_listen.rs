//! A reload moves the metrics listener to the config's `metrics.listen`:
//! another port, the wildcard on the same port (bound only once the old
//! socket is closed), off and on again. An address another process holds
//! refuses the reload with nothing changed; one that only conflicts once the
//! old socket is closed brings the old one back, and the next reload tries
//! again. Before, every change waited for a restart.

use std::net::{SocketAddr, TcpListener};

use vip_tests::{
    daemon::{Daemon, Instance},
    http,
    netns::{Lab, Netns},
    root::require_root,
};

/// The server's address on the lab's link, where a test socket takes a port.
const LINK_ADDR: &str = "198.18.0.2";

fn config(listen: &str, ranges: &[&str]) -> String {
    let mut text = format!(
        "interfaces = [\"{}\"]\n[metrics]\nlisten = \"{listen}\"\n",
        Lab::SERVER_IF
    );
    for (i, cidr) in ranges.iter().enumerate() {
        text.push_str(&format!("[[range]]\nname = \"r{i}\"\ncidr = \"{cidr}\"\n"));
    }
    text
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Panics unless /healthz answers at `at`.
fn serves(ns: &Netns, at: &str) {
    let (status, body) = http::get(ns, addr(at), "/healthz");
    assert_eq!(status, 200, "{at}: {body}");
    assert!(body.starts_with("ok: attached to "), "{at}: {body}");
}

/// Panics unless nothing listens at `at`.
fn silent(ns: &Netns, at: &str) {
    let error = http::try_get(ns, addr(at), "/healthz").expect_err(at);
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused, "{at}");
}

/// A socket of the test's, bound to `at` in `ns`.
fn take(ns: &Netns, at: &str) -> TcpListener {
    let at = addr(at);
    ns.run_in(move || TcpListener::bind(at))
        .unwrap_or_else(|e| panic!("binding {at}: {e}"))
}

fn ranges(daemon: &Daemon) -> usize {
    daemon.stats_json()["ranges"].as_array().unwrap().len()
}

/// Moves `daemon` to `listen`; panics unless the reload succeeds.
fn move_to(daemon: &Daemon, listen: &str) {
    daemon.rewrite_config(&config(listen, &["192.0.2.0/24"]));
    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
}

#[test]
fn a_reload_moves_the_metrics_listener() {
    if !require_root("a_reload_moves_the_metrics_listener") {
        return;
    }
    let lab = Lab::new("mlisten");
    lab.server.ip(&[
        "addr",
        "add",
        &format!("{LINK_ADDR}/24"),
        "dev",
        Lab::SERVER_IF,
    ]);
    let instance = Instance::new("mlisten");
    let ns = &lab.server;
    let daemon = Daemon::start(ns, &config("127.0.0.1:9669", &["192.0.2.0/24"]), &instance);
    serves(ns, "127.0.0.1:9669");

    move_to(&daemon, "127.0.0.1:9670");
    silent(ns, "127.0.0.1:9669");
    serves(ns, "127.0.0.1:9670");

    // The same port on every address: only once the old socket is closed.
    move_to(&daemon, "0.0.0.0:9670");
    serves(ns, "127.0.0.1:9670");
    serves(ns, &format!("{LINK_ADDR}:9670"));

    // An address in use by another process: refused, nothing changed (the
    // range the config adds is not there).
    let taken = take(ns, "127.0.0.1:9671");
    daemon.rewrite_config(&config(
        "127.0.0.1:9671",
        &["192.0.2.0/24", "198.51.100.0/24"],
    ));
    let line = daemon.reload();
    assert!(
        line.contains("refused") && line.contains("cannot listen on 127.0.0.1:9671"),
        "{line}"
    );
    assert_eq!(ranges(&daemon), 1);
    serves(ns, "127.0.0.1:9670");
    drop(taken);

    move_to(&daemon, "off");
    silent(ns, "127.0.0.1:9670");
    move_to(&daemon, "127.0.0.1:9672");
    serves(ns, "127.0.0.1:9672");

    // The wildcard on 9672 conflicts with the link address the test holds,
    // which is seen only once the old socket is closed: it serves again, and
    // the reload failed at its last step.
    let taken = take(ns, &format!("{LINK_ADDR}:9672"));
    daemon.rewrite_config(&config("0.0.0.0:9672", &["192.0.2.0/24"]));
    let line = daemon.reload();
    assert!(
        line.contains("failed half-way") && line.contains("cannot listen on 0.0.0.0:9672"),
        "{line}"
    );
    serves(ns, "127.0.0.1:9672");
    drop(taken);
    // The same config again: the listener is what is left to move.
    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
    serves(ns, "127.0.0.1:9672");
    serves(ns, &format!("{LINK_ADDR}:9672"));

    let log = daemon.stop();
    assert!(log.contains("metrics: no longer serving"), "{log}");
    instance.vip_ok(ns, &["down"]);
    instance.assert_nothing_left(ns, Lab::SERVER_IF);
}
