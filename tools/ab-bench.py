#!/usr/bin/env python3
"""A/B the decap path: alternate two or more `vip-bench` binaries, as root.

Single bench runs move by 2 to 3 ns from one process to the next (where the
kernel places the programs' code and maps), more than most changes to the
datapath. Alternating the binaries of two builds and averaging many runs takes
that out. Build each version and copy its bench binary away, e.g.

    cargo xtask bench -- --only decap --runs 1 && cp target/release/vip-bench /tmp/ab/after

(`cargo xtask build` alone does not rebuild vip-bench, which embeds the
datapath object: copies made after it are all the old datapath.) Then:

    tools/ab-bench.py --rounds 12 /tmp/ab/before /tmp/ab/after

For each binary it prints the mean and spread of vip's decap work: the
frame-restoring harness around vip_xdp less the harness around an empty program,
in the same process (so the empty program's own drift is out as well).
"""
import argparse
import re
import statistics
import subprocess

WITH = re.compile(r"around vip_xdp took ([0-9.]+)")
ALONE = re.compile(r"around an empty program ([0-9.]+)")


def work(binary, runs, only):
    out = subprocess.run(
        [binary, "--only", only, "--runs", str(runs)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(WITH.search(out)[1]) - float(ALONE.search(out)[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binaries", nargs="+")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3, help="passed to vip-bench")
    parser.add_argument("--only", default="decap", help="passed to vip-bench")
    args = parser.parse_args()
    results = {b: [] for b in args.binaries}
    for _ in range(args.rounds):
        for binary in args.binaries:
            results[binary].append(work(binary, args.runs, args.only))
    for binary, values in results.items():
        print(
            f"{binary}: mean {statistics.mean(values):.2f} ns, "
            f"median {statistics.median(values):.1f}, "
            f"stdev {statistics.stdev(values):.2f}, "
            f"min {min(values):.1f}, max {max(values):.1f} (n={len(values)})"
        )


if __name__ == "__main__":
    main()
