//! Reading a VM's console: which binaries finished, why it ended, and the
//! tests' results.

use std::{process::ExitStatus, time::Duration};

use anyhow::bail;

use super::vm::{finished_line, TestBinary, DONE, RUNNING};

/// The test binaries that had not exited when the VM ended.
pub(super) fn unfinished(tests: &[TestBinary], output: &str) -> Vec<TestBinary> {
    tests
        .iter()
        .filter(|test| !output.contains(&finished_line(&test.name)))
        .cloned()
        .collect()
}

/// Where the script had got to: "while running NAME" or "after NAME".
pub(super) fn last_running(output: &str) -> String {
    match output
        .lines()
        .filter_map(|l| l.strip_prefix(RUNNING))
        .next_back()
    {
        None => "before the first test binary".into(),
        Some(name) if output.contains(&finished_line(name)) => format!("after {name}"),
        Some(name) => format!("while running {name}"),
    }
}

pub(super) fn ended_why(output: &str) -> &'static str {
    if output.contains("Kernel panic") {
        "its kernel panicked"
    } else {
        "it stopped"
    }
}

/// Sums the `test result:` lines; fails unless every binary reported and none failed.
pub(super) fn report(
    release: &str,
    output: &str,
    binaries: usize,
    took: Duration,
    vm: ExitStatus,
) -> anyhow::Result<()> {
    let (mut passed, mut failed, mut results) = (0u64, 0u64, 0usize);
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        results += 1;
        let words: Vec<&str> = rest.split_whitespace().collect();
        for pair in words.windows(2) {
            let count = pair[0].parse::<u64>().unwrap_or(0);
            match pair[1].trim_end_matches([';', ',']) {
                "passed" => passed += count,
                "failed" => failed += count,
                _ => {}
            }
        }
    }
    let skipped = output.lines().filter(|l| l.starts_with("SKIPPED ")).count();
    println!(
        "kernel {release}: {passed} passed, {failed} failed, {skipped} skipped, in {results} of {binaries} test binaries ({} s)",
        took.as_secs()
    );
    if !output.contains(DONE) || !vm.success() {
        bail!(
            "the {release} VM ended ({vm}) before its tests finished: {} {} (console above)",
            ended_why(output),
            last_running(output)
        );
    }
    if failed > 0 || results != binaries || skipped > 0 {
        bail!("kernel {release}: tests failed, skipped or did not report");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn binaries(names: &[&str]) -> Vec<TestBinary> {
        names
            .iter()
            .map(|n| TestBinary {
                name: n.to_string(),
                executable: PathBuf::from(format!("/t/{n}")),
                only: &[],
            })
            .collect()
    }

    #[test]
    fn a_vm_that_ended_midway_leaves_the_running_binary_and_the_rest_to_rerun() {
        let tests = binaries(&["a", "b", "c"]);
        let output = "vm: kernel 6.12\nvm: running a\nvm: a exited with 0, 150 MB in use\n\
                      vm: running b\n[ 28.9] Kernel panic - not syncing\n";
        assert_eq!(unfinished(&tests, output), binaries(&["b", "c"]));
        assert_eq!(last_running(output), "while running b");
        assert_eq!(ended_why(output), "its kernel panicked");
    }

    #[test]
    fn a_vm_that_ended_between_binaries_says_after_which() {
        let tests = binaries(&["a", "b"]);
        let output = "vm: running a\nvm: a exited with 101, 150 MB in use\n";
        assert_eq!(unfinished(&tests, output), binaries(&["b"]));
        assert_eq!(last_running(output), "after a");
        assert_eq!(ended_why(output), "it stopped");
        assert_eq!(last_running(""), "before the first test binary");
    }
}
