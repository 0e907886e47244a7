//! Tests that need root run when root, and fail rather than skip under CI.

/// True when the caller may go on. When not root: panics under `CI=true`,
/// otherwise says the test is skipped and returns false.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs root, and CI=true forbids skipping it");
    }
    eprintln!("SKIPPED {test}: needs root");
    false
}
