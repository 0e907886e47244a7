#!/usr/bin/env python3
"""A/B two builds of vip, as root: alternate their bench binaries, many short runs.

Single runs on a noisy machine spread by several ns (BPF_PROG_TEST_RUN) or by
±15% (end to end), more than most datapath changes. Alternating the two builds'
binaries in the order A B B A, many times, and comparing means takes drift out.
Build both trees first (e.g. the older one in a git worktree):

    cargo xtask bench --only nothing; cargo xtask bench --e2e --only nothing

(each tree's binaries find their own datapath object and `vip` under their own
target/). Then, for the cases whose label has TEXT:

    tools/ab-vip.py --rounds 20 --only IPv6 OLD_TREE NEW_TREE
    tools/ab-vip.py --e2e --rounds 10 --only 65,536 OLD_TREE NEW_TREE

BPF_PROG_TEST_RUN: ns vip adds over the empty program of the same run, per
case. End to end: Mpps per case.

With --objects, BEFORE and AFTER are two datapath bench objects (copies of
target/ebpf-bench/bpfel-unknown-none/release/vip-ebpf from two builds of one
tree): this tree's vip-bench times each through VIP_EBPF_BENCH_OBJ, for a
datapath change alone, without a second tree.

    tools/ab-vip.py --objects --rounds 10 --only IPv4 /tmp/before.o /tmp/after.o

With --objects, either side may also be several objects, comma-separated:
layout variants of one build (`tools/layout-variants.py`). Each round then
times every object of both sides once, in a shuffled order, and each side's
figures are pooled over its objects (each object's median is printed too).
An object given as OBJECT@TREE is timed by TREE's vip-bench instead: for a
side whose maps this tree's loader no longer matches (a layout that added a
map), e.g. layout variants of the older tree timed by that tree's binaries.
One layout can move a case by more than a change does, so a change is judged
over several.

A throwaway object that counts differently (or not at all) fails vip-bench's
check of vip_xdp's counts; --unchecked-counts (with --objects) passes
vip-bench's own flag of that name.

With --profile N (BPF_PROG_TEST_RUN, one case: --only must match one), each run
times N repetitions under `perf record -a` and reports vip_xdp's samples over
the samples of the test-run loop's own functions (bpf_test_run,
bpf_test_timer_continue, __local_bh_enable_ip) taken while vip_xdp ran. Both
sides see the same hypervisor steal and frequency in the same seconds, so the
share moves by a few percent between runs where ns added moves by 30 to 50%
on a busy VM. It is a relative figure, for A/B only: the share is not ns.

    tools/ab-vip.py --profile 100000000 --rounds 2 --only "100 range(s), IPv6" OLD NEW
"""
import argparse
import os
import random
import re
import statistics
import subprocess
import sys

PROG = re.compile(r"\| (.+?) \| ([0-9.]+) .*?\| empty XDP_\w+ \| ([0-9.]+) ")
E2E = re.compile(r"^(.+): ([0-9.]+) \(.*Mpps$", re.M)


TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_tree(build, objects):
    """The tree whose binaries run, and their environment: BUILD itself, or
    with --objects this tree (or the TREE of OBJECT@TREE) timing the bench
    object BUILD."""
    if objects:
        path, _, tree = build.partition("@")
        return tree or TREE, dict(os.environ, VIP_EBPF_BENCH_OBJ=os.path.abspath(path))
    return build, None


def once(build, e2e, only, objects, unchecked):
    tree, env = bench_tree(build, objects)
    binary = f"{tree}/target/release/{'vip-e2e' if e2e else 'vip-bench'}"
    args = ["--only", only, "--runs", "1"] + (["--seconds", "2"] if e2e else [])
    args += ["--unchecked-counts"] if unchecked else []
    out = subprocess.run(
        [binary] + args, check=True, capture_output=True, text=True, env=env
    ).stdout
    if e2e:
        return {m[1]: float(m[2]) for m in E2E.finditer(out)}
    return {m[1]: float(m[2]) - float(m[3]) for m in PROG.finditer(out)}


LOOP = {"bpf_test_run", "bpf_test_timer_continue", "__local_bh_enable_ip"}


def profiled(build, only, objects, repeat, unchecked):
    """vip_xdp's perf samples over the test-run loop's, while vip_xdp ran."""
    tree, env = bench_tree(build, objects)
    data = "/tmp/ab-vip.perf.data"
    bench = [f"{tree}/target/release/vip-bench", "--only", only,
             "--repeat", str(repeat), "--runs", "1"]
    bench += ["--unchecked-counts"] if unchecked else []
    subprocess.run(["perf", "record", "-q", "-a", "-o", data, "--"] + bench,
                   check=True, capture_output=True, env=env)
    script = subprocess.run(["perf", "script", "-i", data, "-F", "time,ip,sym"],
                            check=True, capture_output=True, text=True).stdout
    samples = []
    for line in script.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            samples.append((float(fields[0].rstrip(":")), fields[2]))
    ours = [t for t, sym in samples if sym.endswith("_vip_xdp")]
    if not ours:
        sys.exit(f"no vip_xdp samples in {data}: does --only match a case?")
    window = [sym for t, sym in samples if min(ours) <= t <= max(ours)]
    return {only: len(ours) / max(1, sum(sym in LOOP for sym in window))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", required=True)
    parser.add_argument("--e2e", action="store_true")
    parser.add_argument("--objects", action="store_true",
                        help="BEFORE and AFTER are bench objects, not trees")
    parser.add_argument("--profile", type=int, metavar="REPEAT",
                        help="compare vip_xdp's share of perf samples, REPEAT repetitions a run")
    parser.add_argument("--unchecked-counts", action="store_true",
                        help="vip-bench does not check vip_xdp's counts (throwaway "
                             "objects that count differently; with --objects)")
    parser.add_argument("before")
    parser.add_argument("after")
    args = parser.parse_args()
    if args.objects and args.e2e:
        parser.error("--objects times BPF_PROG_TEST_RUN cases only")
    if args.profile and args.e2e:
        parser.error("--profile times BPF_PROG_TEST_RUN cases only")
    if args.unchecked_counts and not args.objects:
        parser.error("--unchecked-counts is for --objects")
    sides = {which: getattr(args, which).split(",") if args.objects else [getattr(args, which)]
             for which in ("before", "after")}
    if args.profile and any(len(builds) > 1 for builds in sides.values()):
        parser.error("--profile takes one object a side")
    results = {}
    per_object = {}
    shuffle = random.Random(0)
    for round_ in range(args.rounds):
        if all(len(builds) == 1 for builds in sides.values()):
            before, after = ("before", sides["before"][0]), ("after", sides["after"][0])
            order = [before, after, after, before]
            if round_ % 2:
                order.reverse()
        else:
            order = [(which, build) for which, builds in sides.items() for build in builds]
            shuffle.shuffle(order)
        for which, build in order:
            if args.profile:
                figures = profiled(build, args.only, args.objects, args.profile,
                                   args.unchecked_counts)
            else:
                figures = once(build, args.e2e, args.only, args.objects,
                               args.unchecked_counts)
            for case, value in figures.items():
                results.setdefault(case, {}).setdefault(which, []).append(value)
                per_object.setdefault((case, which), {}).setdefault(build, []).append(value)
    unit = "Mpps" if args.e2e else "sample share" if args.profile else "ns added"
    for case, by in results.items():
        for which in ("before", "after"):
            v = by.get(which, [])
            if len(v) > 1:
                print(
                    f"{case} | {which} | {unit}: mean {statistics.mean(v):.2f}, "
                    f"median {statistics.median(v):.2f}, sd {statistics.stdev(v):.2f}, n {len(v)}"
                )
                objects = per_object[(case, which)]
                if len(objects) > 1:
                    medians = ", ".join(
                        f"{os.path.basename(build.partition('@')[0])} "
                        f"{statistics.median(values):.2f}"
                        for build, values in objects.items()
                    )
                    print(f"{case} | {which} | medians by object: {medians}")


if __name__ == "__main__":
    main()
