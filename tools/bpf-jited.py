#!/usr/bin/env python3
"""Dump the JITed machine code of a loaded BPF program, for reading a perf profile.

bpftool is not on this machine and perf cannot annotate BPF symbols without
libopcodes, so BENCHMARKS.md's profile of vip_xdp was read like this, as root,
while `vip-e2e --only 65,536` runs:

    grep _vip_xdp /proc/kallsyms                      # the program's start address
    tools/bpf-jited.py vip_xdp /tmp/vip_xdp.bin       # its machine code
    perf record -a -C 0 -o /tmp/perf.data -- sleep 2
    perf script -i /tmp/perf.data -F ip,sym | grep vip_xdp | sort | uniq -c | sort -rn | head
    objdump -D -b binary -mi386:x86-64 --adjust-vma=0xSTART /tmp/vip_xdp.bin

Usage: bpf-jited.py PROGRAM_NAME OUTPUT_FILE (every loaded program of that name
is written; the last one wins).
"""
import ctypes
import os
import struct
import sys

SYS_BPF = 321  # x86-64
BPF_PROG_GET_NEXT_ID, BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 11, 13, 15
# Offsets in struct bpf_prog_info.
JITED_LEN, JITED_INSNS, NAME = 16, 24, 64

libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    fd = libc.syscall(SYS_BPF, cmd, buf, 128)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd, buf


def info(fd, jited=None):
    raw = ctypes.create_string_buffer(256)
    if jited is not None:
        struct.pack_into("I", raw, JITED_LEN, len(jited))
        struct.pack_into("Q", raw, JITED_INSNS, ctypes.addressof(jited))
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, 256, ctypes.addressof(raw)))
    return raw.raw


def main(name, output):
    prog_id, found = 0, False
    while True:
        try:
            _, buf = bpf(BPF_PROG_GET_NEXT_ID, struct.pack("II", prog_id, 0))
        except OSError:
            break
        prog_id = struct.unpack_from("II", buf.raw)[1]
        fd, _ = bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("I", prog_id))
        try:
            raw = info(fd)
            if raw[NAME:NAME + 16].split(b"\0")[0].decode() == name:
                code = ctypes.create_string_buffer(struct.unpack_from("I", raw, JITED_LEN)[0])
                info(fd, code)
                with open(output, "wb") as out:
                    out.write(code.raw)
                print(f"{name}: id {prog_id}, {len(code.raw)} bytes -> {output}")
                found = True
        finally:
            os.close(fd)
    if not found:
        sys.exit(f"no loaded program named {name}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
