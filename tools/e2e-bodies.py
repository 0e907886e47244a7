#!/usr/bin/env python3
"""Time each XDP program's own instructions per packet in one vip-e2e case, from a profile.

vip-e2e gives a receiver's packet rate, which includes the generator, veth and
the kernel's receive path around the program. This runs the case once under
`perf record -F 4000 -a` and divides each BPF program's samples (at 4,000 a
second on the CPU that runs it) by the packets the case received (its rate
times the seconds it sent): ns per packet in the program's own instructions.
An estimate, for telling a program's cost from the path's (BENCHMARKS.md
"Issue 19, fourteenth session" used it to find the per-VIP tables' cache
misses).

As root, after `cargo xtask bench --e2e --only nothing`:

    tools/e2e-bodies.py --seconds 6 "VIPs of one /112 (dense), uniform"
"""
import argparse
import collections
import os
import re
import subprocess
import sys

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREQUENCY = 4000
RATE = re.compile(r"^(.+): ([0-9.]+) \(.*\) Mpps$", re.M)
SYMBOL = re.compile(r"bpf_prog_[0-9a-f]+_(\w+)$")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("case", help="text that only the vip-e2e case's label contains")
    args = parser.parse_args()
    data = "/tmp/e2e-bodies.perf.data"
    e2e = [f"{TREE}/target/release/vip-e2e", "--only", args.case, "--runs", "1",
           "--seconds", str(args.seconds)]
    out = subprocess.run(["perf", "record", "-F", str(FREQUENCY), "-q", "-a", "-o", data, "--"]
                         + e2e, check=True, capture_output=True, text=True).stdout
    rates = RATE.findall(out)
    if len(rates) != 1:
        sys.exit(f"the text must match exactly one case, it matched {len(rates)}")
    label, mpps = rates[0][0], float(rates[0][1])
    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"],
                            check=True, capture_output=True, text=True).stdout
    samples = collections.Counter(m[1] for line in script.splitlines()
                                  if (m := SYMBOL.search(line.strip())))
    packets = mpps * 1e6 * args.seconds
    print(f"{label}: {mpps} Mpps")
    for name, count in samples.most_common():
        print(f"{name}: {count / FREQUENCY / packets * 1e9:.1f} ns per packet")


if __name__ == "__main__":
    main()
