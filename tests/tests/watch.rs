//! `vip stats --watch` under a real terminal (tmux): it shows non-zero rates for
//! the VIP that gets traffic, only the ranges named when some are, goes on
//! through a reload that removes one of them and through a restart of the
//! daemon, and quits cleanly on `q` and on Ctrl-C.

use std::{
    net::{IpAddr, UdpSocket},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use vip_tests::{
    daemon::{vip_bin, Daemon, Instance},
    root::require_root,
    seed::{DirectLab, Services, DIRECT_SERVER_IF, UDP_PORT},
};

const VIP: &str = "192.0.2.9";
static NEXT_SOCKET: AtomicU32 = AtomicU32::new(0);

/// A tmux server of its own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let tmux = Tmux {
            // One socket per server: a killed server may linger on its socket.
            socket: format!(
                "vip-watch-{}-{}",
                std::process::id(),
                NEXT_SOCKET.fetch_add(1, Ordering::Relaxed)
            ),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "w",
            "-x",
            "120",
            "-y",
            "30",
            command,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "w"])
    }

    /// Waits until the screen satisfies `check`; panics with the screen if not.
    fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "waiting for {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The packets-per-second column of the VIP's row, if it is on screen.
fn vip_rate(screen: &str) -> Option<f64> {
    let row = screen
        .lines()
        .find(|l| l.trim_start().starts_with(VIP) && l.starts_with("  "))?;
    let column = row.split_whitespace().nth(1)?;
    let (number, scale) = match column.chars().last()? {
        'k' => (&column[..column.len() - 1], 1e3),
        'M' => (&column[..column.len() - 1], 1e6),
        _ => (column, 1.0),
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// `vip stats RANGES --watch` in a tmux of its own, once the VIP shows a rate.
fn watching(instance: &Instance, ranges: &str) -> Tmux {
    let command = format!(
        "{} --pin-dir {} stats {ranges} --watch; echo vip-exited-$?; sleep 60",
        vip_bin().display(),
        instance.pin_dir().display()
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("a non-zero rate for the VIP", |s| {
        vip_rate(s).is_some_and(|rate| rate > 0.0)
    });
    tmux
}

/// Quits the watch with `keys`; panics unless it exits 0.
fn quit(tmux: &Tmux, keys: &str) {
    tmux.run(&["send-keys", "-t", "w", keys]);
    let screen = tmux.wait_for("vip to exit", |s| s.contains("vip-exited-"));
    assert!(screen.contains("vip-exited-0"), "{screen}");
}

/// Watches `vip stats RANGES --watch` until the VIP shows a rate, then
/// quits with `keys`. The range "other" is on screen unless `ranges` leaves
/// it out.
fn watch_then_quit(instance: &Instance, ranges: &str, keys: &str) {
    let tmux = watching(instance, ranges);
    let screen = tmux.screen();
    assert!(screen.contains("PKT/S"), "{screen}");
    assert_eq!(
        screen.contains("other (198.51.100.0/24)"),
        !ranges.contains("web"),
        "{screen}"
    );
    quit(&tmux, keys);
}

/// Watches "web" and "other" while a reload removes "other" and another
/// adds it back: the watch goes on, names the missing range in its header
/// meanwhile, and shows it again once it is back.
fn watch_through_reloads(instance: &Instance, daemon: &Daemon, config: &str) {
    let tmux = watching(instance, "web other");
    tmux.wait_for("both ranges", |s| s.contains("other (198.51.100.0/24)"));
    let other = "[[range]]\nname = \"other\"\ncidr = \"198.51.100.0/24\"\n";
    assert!(config.contains(other));
    daemon.rewrite_config(&config.replace(other, ""));
    daemon.reload();
    let screen = tmux.wait_for("the removed range named in the header", |s| {
        s.contains("; no longer in the datapath: other")
    });
    assert!(!screen.contains("other (198.51.100.0/24)"), "{screen}");
    assert!(!screen.contains("vip-exited-"), "{screen}");
    tmux.wait_for("the VIP's rate after the reload", |s| {
        s.contains("no longer in the datapath") && vip_rate(s).is_some_and(|rate| rate > 0.0)
    });
    daemon.rewrite_config(config);
    daemon.reload();
    tmux.wait_for("the range back, and the header without it", |s| {
        s.contains("other (198.51.100.0/24)") && !s.contains("no longer in the datapath")
    });
    quit(&tmux, "q");
}

#[test]
fn watch_shows_live_rates_of_the_named_ranges_through_reloads_and_restarts_and_quits_on_q_and_ctrl_c(
) {
    if !require_root(
        "watch_shows_live_rates_of_the_named_ranges_through_reloads_and_restarts_and_quits_on_q_and_ctrl_c",
    ) {
        return;
    }
    let lab = DirectLab::new("watch");
    let _services = Services::start(&lab.server);
    let instance = Instance::new("watch");
    let config = format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\n[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\n\
         [[range]]\nname = \"other\"\ncidr = \"198.51.100.0/24\"\n"
    );
    let daemon = Daemon::start(&lab.server, &config, &instance);

    // About 100 datagrams a second, for at most 90 s.
    let stop = Arc::new(AtomicBool::new(false));
    let flow = {
        let stop = stop.clone();
        lab.client.spawn_in(move || {
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            let vip: IpAddr = VIP.parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                socket.send_to(b"watch", (vip, UDP_PORT)).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    watch_then_quit(&instance, "", "q");
    watch_then_quit(&instance, "web", "C-c");
    watch_through_reloads(&instance, &daemon, &config);

    // vip down, then vip run: the watch says there is no datapath, then
    // reads the new one's maps (the ones it held are no longer counted in).
    let tmux = watching(&instance, "web");
    daemon.stop();
    let screen = tmux.wait_for("no datapath in the header", |s| {
        s.contains("no datapath pinned in")
    });
    assert!(vip_rate(&screen).is_none(), "{screen}");
    let daemon = Daemon::start(&lab.server, &config, &instance);
    tmux.wait_for("the new datapath's rates", |s| {
        !s.contains("no datapath") && vip_rate(s).is_some_and(|rate| rate > 0.0)
    });
    quit(&tmux, "q");

    stop.store(true, Ordering::Relaxed);
    flow.join().unwrap();
    daemon.stop();
}

#[test]
fn watch_without_a_terminal_is_a_clear_error() {
    let out = Command::new(vip_bin())
        .args(["--pin-dir", "/nonexistent", "stats", "--watch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "vip: error: vip stats --watch needs a terminal; use vip stats --json to read counters from a script\n"
    );
}
