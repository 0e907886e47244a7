#!/usr/bin/env python3
"""Where one BPF program of a vip-bench case spends its time: its JITed
instructions beside their profile samples.

`tools/bpf-bodies.py` gives each program's total; this shows where inside it.
It runs the case once under `perf record -F 4000 -a` (as bpf-bodies.py does),
writes the program's machine code while the case runs (`tools/bpf-jited.py`),
disassembles it with objdump and prints every instruction that holds at least
--min samples, with its share of the program's samples. Without a PMU (this
VM exposes none) a sample lands on the instruction after the one that
stalled, so read each hot line together with the line above it.

As root, after `cargo xtask bench -- --only nothing`:

    tools/bpf-annotate.py "1 range(s), IPv4" vip_xdp
    tools/bpf-annotate.py --object /tmp/after.o --min 50 "denied port" vip_xdp
    tools/bpf-annotate.py decap bench_vip_xdp_decap   # the decap harness's program

--object times another bench object (a throwaway build, as `tools/ab-vip.py
--objects` does), --unchecked-counts if it counts differently; --baseline
another vip-baseline object.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREQUENCY = 4000
SAMPLE = re.compile(r"bpf_prog_[0-9a-f]+_(\w+)\+0x([0-9a-f]+)$")
BPF_OBJ_NAME_MAX = 15
INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\t")


def profile(case, repeat, env, program, code, unchecked):
    """Runs the case under perf while dumping `program`'s code to `code`
    once it is loaded; returns the samples per offset."""
    data = os.path.join(os.path.dirname(code), "perf.data")
    bench = [f"{TREE}/target/release/vip-bench", "--only", case,
             "--repeat", str(repeat), "--runs", "1"]
    bench += ["--unchecked-counts"] if unchecked else []
    run = subprocess.Popen(["perf", "record", "-F", str(FREQUENCY), "-q", "-a", "-o", data,
                            "--"] + bench, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(run.stdout))
    reader.start()
    dumped = False
    while run.poll() is None and not dumped:
        time.sleep(0.5)
        # bpf_prog_info holds the name cut to BPF_OBJ_NAME_LEN - 1 bytes;
        # kallsyms, which perf's samples name, holds it whole.
        dumped = subprocess.run([sys.executable, f"{TREE}/tools/bpf-jited.py",
                                 program[:BPF_OBJ_NAME_MAX], code],
                                capture_output=True).returncode == 0
    run.wait()
    reader.join()
    if run.returncode != 0:
        sys.exit("".join(output) + f"\nvip-bench failed ({run.returncode})")
    if not dumped:
        sys.exit(f"{program} was never loaded while the case ran: is it in this case?")
    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,symoff"],
                            check=True, capture_output=True, text=True).stdout
    samples = collections.Counter()
    for line in script.splitlines():
        m = SAMPLE.search(line.strip())
        if m and m[1] == program:
            samples[int(m[2], 16)] += 1
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200_000_000,
                        help="BPF_PROG_TEST_RUN repetitions (long enough to dump the code)")
    parser.add_argument("--min", type=int, default=30, help="samples to show an instruction")
    parser.add_argument("--object", help="the vip bench object to time")
    parser.add_argument("--baseline", help="the vip-baseline object to time")
    parser.add_argument("--unchecked-counts", action="store_true",
                        help="vip-bench does not check vip_xdp's counts (an --object "
                             "that counts differently)")
    parser.add_argument("case", help="a vip-bench case label, or text only it contains")
    parser.add_argument("program", help="a program's name: vip_xdp, floor_v4_count, ...")
    args = parser.parse_args()
    env = dict(os.environ)
    env["VIP_BASELINE_OBJ"] = os.path.abspath(
        args.baseline or f"{TREE}/target/bpfel-unknown-none/release/vip-baseline")
    env["VIP_EBPF_BENCH_OBJ"] = os.path.abspath(
        args.object or f"{TREE}/target/ebpf-bench/bpfel-unknown-none/release/vip-ebpf")
    with tempfile.TemporaryDirectory() as work:
        code = os.path.join(work, "code.bin")
        samples = profile(args.case, args.repeat, env, args.program, code,
                             args.unchecked_counts)
        listing = subprocess.run(["objdump", "-D", "-b", "binary", "-mi386:x86-64", code],
                                 check=True, capture_output=True, text=True).stdout
    total = sum(samples.values())
    if total == 0:
        sys.exit(f"no samples in {args.program}")
    print(f"{args.program}: {total} samples, {total / FREQUENCY / args.repeat * 1e9:.1f} ns a run")
    for line in listing.splitlines():
        m = INSTRUCTION.match(line)
        if m and samples[int(m[1], 16)] >= args.min:
            count = samples[int(m[1], 16)]
            print(f"{count:7d} {100 * count / total:5.1f}% {line.strip()}")


if __name__ == "__main__":
    main()
