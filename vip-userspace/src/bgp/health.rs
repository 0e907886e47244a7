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

/// A check that changed state: `range`'s check number `check` is now `up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub range: usize,
    pub check: usize,
    pub up: bool,
}

/// Runs `check` every interval, sending each change of state to `changes`.
/// Stops when the receiver is gone or the task is aborted.
pub fn spawn(
    range: usize,
    index: usize,
    check: HealthCheck,
    changes: mpsc::UnboundedSender<Change>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut counting = Counting::default();
        let mut ticks = tokio::time::interval(check.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let passed = probe(&check.probe, check.timeout).await;
            if counting.record(passed, check.rise, check.fall) {
                let up = counting.up == Some(true);
                log::info!(
                    "health check {} of range #{range} is {}",
                    check.label,
                    if up { "up" } else { "down" }
                );
                let change = Change {
                    range,
                    check: index,
                    up,
                };
                if changes.send(change).is_err() {
                    return;
                }
            }
        }
    })
}

/// One probe, bounded by `limit`.
pub async fn probe(probe: &Probe, limit: Duration) -> bool {
    match probe {
        Probe::Tcp(addr) => matches!(timeout(limit, TcpStream::connect(addr)).await, Ok(Ok(_))),
        Probe::Http { addr, path } => {
            matches!(timeout(limit, http_get(*addr, path)).await, Ok(Ok(true)))
        }
        Probe::Exec(path) => exec(path, limit).await,
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<bool, hyper::Error> {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return Ok(false);
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "vip-health")
        .body(Empty::<Bytes>::new());
    let Ok(request) = request else {
        driver.abort();
        return Ok(false);
    };
    let answer = sender.send_request(request).await;
    driver.abort();
    Ok(answer?.status().is_success())
}

/// Runs the program with no arguments; passes on exit status 0 within `limit`
/// (it is killed after that).
async fn exec(path: &Path, limit: Duration) -> bool {
    let child = tokio::process::Command::new(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    matches!(timeout(limit, child.wait()).await, Ok(Ok(status)) if status.success())
}

#[cfg(test)]
mod tests {
    use super::Counting;

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
