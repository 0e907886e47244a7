#!/usr/bin/env python3
"""Time each BPF program's own instructions in one vip-bench case, from a profile.

BPF_PROG_TEST_RUN's ns per run include the test-run loop around the program
(20 ns and more here), and on a busy VM the loop's cost moves by more than the
programs differ. A profile separates them: vip-bench runs the case once under
`perf record -F 4000 -a`, and each program's samples, at 4,000 a second on the
CPU that runs it, give the time spent in its own instructions (the returns of
its helper calls included, not the helpers' bodies): samples / 4000 / REPEAT
seconds per run. vip_xdp, the case's floor and the empty program run the same
REPEAT times in one invocation, so their bodies compare directly. For the
decap case, the harness's body is taken out as vip-bench takes its time out:
body(harness around P) - body(harness alone) + body(empty program).

As root, after `cargo xtask bench -- --only nothing`:

    tools/bpf-bodies.py --repeat 50000000 "100 range(s), IPv6"
"""
import argparse
import os
import re
import subprocess
import sys

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREQUENCY = 4000
SAMPLE = re.compile(r"^\s*[0-9.]+%\s+(\d+)\s+\[k\]\s+bpf_prog_[0-9a-f]+_(\w+)\s*$")


def bodies(case, repeat):
    """ns per run of each BPF program's own instructions, by name."""
    data = "/tmp/bpf-bodies.perf.data"
    env = dict(os.environ)
    env.setdefault("VIP_BASELINE_OBJ", f"{TREE}/target/bpfel-unknown-none/release/vip-baseline")
    env.setdefault(
        "VIP_EBPF_BENCH_OBJ", f"{TREE}/target/ebpf-bench/bpfel-unknown-none/release/vip-ebpf"
    )
    bench = [f"{TREE}/target/release/vip-bench", "--only", case,
             "--repeat", str(repeat), "--runs", "1"]
    subprocess.run(["perf", "record", "-F", str(FREQUENCY), "-q", "-a", "-o", data, "--"] + bench,
                   check=True, capture_output=True, env=env)
    report = subprocess.run(["perf", "report", "-i", data, "-n", "--sort", "sym", "--stdio"],
                            check=True, capture_output=True, text=True).stdout
    out = {}
    for line in report.splitlines():
        m = SAMPLE.match(line)
        if m:
            out[m[2]] = out.get(m[2], 0.0) + int(m[1]) * 1e9 / FREQUENCY / repeat
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50_000_000)
    parser.add_argument("case", help="a vip-bench case label, or text only it contains")
    args = parser.parse_args()
    found = bodies(args.case, args.repeat)
    if not found:
        sys.exit("no BPF program samples: does the case label match a case?")
    for name, ns in sorted(found.items(), key=lambda kv: -kv[1]):
        print(f"{name}: {ns:.1f} ns per run")
    if "bench_vip_xdp_decap" in found and "bench_harness_only" in found:
        alone, empty = found["bench_harness_only"], found.get("baseline_pass", 0.0)
        for name in ("bench_vip_xdp_decap", "bench_floor_decap"):
            if name in found:
                print(f"{name} without the harness: {found[name] - alone + empty:.1f} ns per run")


if __name__ == "__main__":
    main()
