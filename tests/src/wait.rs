//! Waiting for something the daemon or the kernel does asynchronously.

use std::time::{Duration, Instant};

/// Polls `ok` every 50 ms until it holds; panics naming `what` after `within`.
pub fn until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
