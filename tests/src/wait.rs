//! Waiting for something the daemon or the kernel does asynchronously.

use std::time::{Duration, Instant};

/// How many times longer than on the host a test waits for anything:
/// `VIP_TEST_PATIENCE`, which `cargo xtask test --kernel` sets in its VMs
/// (software emulation runs the tests 10 to 15 times slower, more on a slow
/// CPU), else 1.
pub fn patience() -> u32 {
    std::env::var("VIP_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// `within` stretched by [`patience`].
pub fn scaled(within: Duration) -> Duration {
    within * patience()
}

/// Polls `ok` every 50 ms until it holds; panics naming `what` after `within`
/// (times [`patience`]).
pub fn until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let within = scaled(within);
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
