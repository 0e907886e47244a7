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
body(harness around P) - body(harness alone) + body(empty program). For an
allow-list case, whose two vip datapaths share the name vip_xdp, it also
prints what the list adds over the range without one, beside what the
allowed-port floor adds over the IPv4 floor.

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
SAMPLE = re.compile(r"^\s*([0-9.]+):\s+([0-9a-f]+)\s+bpf_prog_[0-9a-f]+_(\w+)\+0x([0-9a-f]+)\s*$")


def bodies(case, repeat):
    """ns per run of each BPF program's own instructions, by name. Two loaded
    programs of one name (the allow-list cases time vip_xdp of the range
    without a list, then vip_xdp of the range with one) are told apart by
    their start addresses and named "NAME #1", "NAME #2" in the order of their
    first samples."""
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
    script = subprocess.run(["perf", "script", "-i", data, "-F", "time,ip,sym,symoff"],
                            check=True, capture_output=True, text=True).stdout
    samples = {}  # (name, start) -> [first sample time, count]
    for line in script.splitlines():
        m = SAMPLE.match(line)
        if m:
            key = (m[3], int(m[2], 16) - int(m[4], 16))
            entry = samples.setdefault(key, [float(m[1]), 0])
            entry[1] += 1
    out = {}
    for name in {name for name, _ in samples}:
        loaded = sorted((first, count) for (n, _), (first, count) in samples.items() if n == name)
        for k, (_, count) in enumerate(loaded, 1):
            label = name if len(loaded) == 1 else f"{name} #{k}"
            out[label] = count * 1e9 / FREQUENCY / repeat
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
    if "vip_xdp #2" in found and "floor_v4_port" in found and "floor_v4_count" in found:
        print(f"an allow list: vip_xdp #2 (with the list) over #1 (without) "
              f"{found['vip_xdp #2'] - found['vip_xdp #1']:.1f} ns per run, "
              f"floor_v4_port over floor_v4_count "
              f"{found['floor_v4_port'] - found['floor_v4_count']:.1f}")
    if "bench_vip_xdp_decap" in found and "bench_harness_only" in found:
        alone, empty = found["bench_harness_only"], found.get("baseline_pass", 0.0)
        for name in ("bench_vip_xdp_decap", "bench_floor_decap"):
            if name in found:
                print(f"{name} without the harness: {found[name] - alone + empty:.1f} ns per run")


if __name__ == "__main__":
    main()
