//! Health checks: one probe (TCP connect, HTTP GET, a program), and the
//! rise/fall counting that turns probe results into up and down.

use std::{path::Path, time::Duration};

use http_body_util::Empty;
use hyper::body::Bytes;
use tokio::{net::TcpStream, sync::mpsc, task::JoinHandle, time::timeout};

use crate::config::{HealthCheck, Probe};

/// Where a check stands. A check's first result sets it at once (a restarted
/// daemon must not withdraw a healthy range while it counts up to `rise`);
/// after that it takes `rise` passes in a row to come up and `fall` failures
/// in a row to go down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counting {
    /// `None` before the first result.
    pub up: Option<bool>,
    /// Results in a row that disagree with `up`.
    streak: u32,
}

impl Counting {
    /// Takes one probe result; true when `up` changed.
    pub fn record(&mut self, passed: bool, rise: u32, fall: u32) -> bool {
        let Some(up) = self.up else {
            self.up = Some(passed);
            return true;
        };
        if passed == up {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        if self.streak >= if passed { rise } else { fall } {
            self.up = Some(passed);
            self.streak = 0;
            return true;
        }
        false
    }
}

/// A check that changed state: `range`'s check number `check` is now `up`,
/// or down for the `failure` of its last probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub range: usize,
    pub check: usize,
    pub up: bool,
    pub failure: Option<String>,
}

/// Runs `check` every interval, sending each change of state to `changes`,
/// and a new reason while it stays down. Stops when the receiver is gone or
/// the task is aborted.
pub fn spawn(
    (range, name): (usize, String),
    index: usize,
    check: HealthCheck,
    changes: mpsc::UnboundedSender<Change>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut counting = Counting::default();
        let mut sent: Option<String> = None;
        let mut ticks = tokio::time::interval(check.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = probe(&check.probe, check.timeout).await;
            let changed = counting.record(result.is_ok(), check.rise, check.fall);
            let up = counting.up == Some(true);
            let failure = result.err();
            let new_reason = !up && failure.is_some() && failure != sent;
            if !changed && !new_reason {
                continue;
            }
            let (level, line) = log_line(&check.label, &name, changed, failure.as_deref());
            log::log!(level, "{line}");
            sent = failure.clone();
            let change = Change {
                range,
                check: index,
                up,
                failure,
            };
            if changes.send(change).is_err() {
                return;
            }
        }
    })
}

/// What the log says of a result that changed the check's state (`changed`)
/// or gave a new reason while it stays down.
fn log_line(
    label: &str,
    range: &str,
    changed: bool,
    failure: Option<&str>,
) -> (log::Level, String) {
    match (changed, failure) {
        (_, None) => (
            log::Level::Info,
            format!("health check {label} of range {range:?} is up"),
        ),
        (true, Some(why)) => (
            log::Level::Warn,
            format!("health check {label} of range {range:?} is down: {why}"),
        ),
        (false, Some(why)) => (
            log::Level::Warn,
            format!("health check {label} of range {range:?} is still down, now: {why}"),
        ),
    }
}

/// One probe, bounded by `limit`: passed, or why not, in a few words.
pub async fn probe(probe: &Probe, limit: Duration) -> Result<(), String> {
    match probe {
        Probe::Tcp(addr) => match timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("connect: {e}")),
            Err(_) => Err(none_within("connection", limit)),
        },
        Probe::Http { addr, path } => timeout(limit, http_get(*addr, path))
            .await
            .unwrap_or_else(|_| Err(none_within("answer", limit))),
        Probe::Exec(path) => exec(path, limit).await,
    }
}

/// A probe's failure at its time limit.
fn none_within(what: &str, limit: Duration) -> String {
    format!("no {what} within {} ms", limit.as_millis())
}

/// Passes on a 2xx answer.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "vip-health")
        .body(Empty::<Bytes>::new());
    let answer = match request {
        Ok(request) => sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}")),
        Err(e) => Err(format!("HTTP request: {e}")),
    };
    driver.abort();
    let status = answer?.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// Runs the program with no arguments; passes on exit status 0 within `limit`
/// (it is killed after that).
async fn exec(path: &Path, limit: Duration) -> Result<(), String> {
    let mut child = tokio::process::Command::new(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    match timeout(limit, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(status.to_string()),
        Ok(Err(e)) => Err(format!("waiting for it: {e}")),
        Err(_) => Err(format!("{}; killed", none_within("exit", limit))),
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt, time::Duration};

    use super::{log_line, probe, Counting};
    use crate::config::Probe;

    /// An exec check in `dir` that runs `body` in sh.
    fn script(dir: &std::path::Path, body: &str) -> Probe {
        let path = dir.join("check");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Probe::Exec(path)
    }

    async fn exec(body: &str, limit_ms: u64) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        probe(&script(dir.path(), body), Duration::from_millis(limit_ms)).await
    }

    #[tokio::test]
    async fn a_failed_exec_check_says_why() {
        assert_eq!(exec("exit 0", 2000).await, Ok(()));
        assert_eq!(
            exec("exit 3", 2000).await,
            Err("exit status: 3".to_string())
        );
        assert_eq!(
            exec("sleep 5", 100).await,
            Err("no exit within 100 ms; killed".to_string())
        );
        let missing = Probe::Exec("/nonexistent/vip-check".into());
        assert_eq!(
            probe(&missing, Duration::from_secs(1)).await,
            Err("cannot run it: No such file or directory (os error 2)".to_string())
        );
    }

    /// While a check stays down, a new reason is sent (the same one is not);
    /// passing then brings it up with none.
    #[tokio::test]
    async fn a_check_that_stays_down_sends_a_new_reason() {
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("code");
        std::fs::write(&code, "3").unwrap();
        let check = crate::config::HealthCheck {
            label: "exec".into(),
            probe: script(dir.path(), &format!("exit $(cat '{}')", code.display())),
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
        };
        let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let task = super::spawn((0, "web".into()), 0, check, sender);
        let mut next = async || {
            let change = tokio::time::timeout(Duration::from_secs(5), changes.recv());
            let change = change.await.expect("a change").unwrap();
            (change.up, change.failure)
        };
        assert_eq!(next().await, (false, Some("exit status: 3".into())));
        std::fs::write(&code, "4").unwrap();
        assert_eq!(next().await, (false, Some("exit status: 4".into())));
        std::fs::write(&code, "0").unwrap();
        assert_eq!(next().await, (true, None));
        task.abort();
    }

    #[test]
    fn the_log_names_a_change_and_a_new_reason_while_down() {
        assert_eq!(
            log_line("tcp", "web", true, Some("connect: refused")),
            (
                log::Level::Warn,
                r#"health check tcp of range "web" is down: connect: refused"#.to_string()
            )
        );
        assert_eq!(
            log_line("tcp", "web", false, Some("HTTP 503")),
            (
                log::Level::Warn,
                r#"health check tcp of range "web" is still down, now: HTTP 503"#.to_string()
            )
        );
        assert_eq!(
            log_line("tcp", "web", true, None),
            (
                log::Level::Info,
                r#"health check tcp of range "web" is up"#.to_string()
            )
        );
    }

    #[test]
    fn the_first_result_counts_at_once_then_rise_and_fall_apply() {
        let mut c = Counting::default();
        assert!(c.record(true, 3, 2));
        assert_eq!(c.up, Some(true));
        assert!(!c.record(false, 3, 2));
        assert!(!c.record(true, 3, 2), "a pass resets the failures");
        assert!(!c.record(false, 3, 2));
        assert!(c.record(false, 3, 2), "two failures in a row");
        assert_eq!(c.up, Some(false));
        assert!(!c.record(true, 3, 2));
        assert!(!c.record(true, 3, 2));
        assert!(c.record(true, 3, 2), "three passes in a row");
        assert_eq!(c.up, Some(true));
    }

    #[test]
    fn rise_and_fall_of_one_follow_every_result() {
        let mut c = Counting::default();
        assert!(c.record(false, 1, 1));
        assert!(c.record(true, 1, 1));
        assert!(!c.record(true, 1, 1));
        assert!(c.record(false, 1, 1));
        assert_eq!(c.up, Some(false));
    }
}
