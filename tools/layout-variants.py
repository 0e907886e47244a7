#!/usr/bin/env python3
"""Build this tree's datapath bench object once per layout padding, for A/B over layouts.

On the AMD EPYC of family 25 model 17 the ns vip_xdp adds moved by up to 2 ns
on an IPv6 hit when its code only moved (NOTES.md, thirty-fifth session), so a
datapath change timed in the one layout its build happens to get can look
better or worse than it is. Each object here has `VIP_BENCH_LAYOUT_PAD` (see
vip-ebpf/src/bench.rs) set to one count: the same code, shifted. Build a set
in each tree to compare, then pool each side with `tools/ab-vip.py --objects`:

    tools/layout-variants.py /tmp/before            # in the older tree (a worktree)
    tools/layout-variants.py /tmp/after             # in this tree
    tools/ab-vip.py --objects --rounds 3 --only IPv6 \\
        /tmp/before/pad-0.o,/tmp/before/pad-16.o,... /tmp/after/pad-0.o,...

Each object is a copy of target/ebpf-bench/bpfel-unknown-none/release/vip-ebpf
as `cargo xtask bench -- --only nothing` builds it with that count; the tree's
own bench object is left as the last count built (0 by default: run it last).
"""
import argparse
import os
import shutil
import subprocess
import sys

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBJECT = "target/ebpf-bench/bpfel-unknown-none/release/vip-ebpf"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pads", default="16,40,64,128,0",
                        help="padding counts, comma-separated (default: %(default)s)")
    parser.add_argument("out", help="directory for pad-N.o")
    args = parser.parse_args()
    pads = [int(p) for p in args.pads.split(",")]
    os.makedirs(args.out, exist_ok=True)
    for pad in pads:
        env = dict(os.environ, VIP_BENCH_LAYOUT_PAD=str(pad))
        build = subprocess.run(["cargo", "xtask", "bench", "--", "--only", "nothing"],
                               cwd=TREE, env=env, capture_output=True, text=True)
        if build.returncode != 0:
            sys.exit(f"building with VIP_BENCH_LAYOUT_PAD={pad} failed:\n{build.stderr}")
        target = os.path.join(args.out, f"pad-{pad}.o")
        shutil.copyfile(os.path.join(TREE, OBJECT), target)
        print(target)


if __name__ == "__main__":
    main()
