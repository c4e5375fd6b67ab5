#!/usr/bin/env python3
"""Where a run's time goes on atomic read-modify-write instructions.

    perf record -F 4999 -o perf.data BINARY ARGS...
    benches/locksites.py BINARY perf.data [N]

Counts the samples of `perf.data` whose address is a `lock`-prefixed
instruction of BINARY (a mutex, an `Arc` or `Bytes` count, an atomic
counter) or the instruction just after one (where the sample lands once
the locked instruction retires), and prints their share of all samples
and the N sites with most samples (default 40), each with its function.
BINARY is the executable `perf record` ran (e.g. the `load` bench from
`cargo bench -p remote-benches --bench load --no-run`); it may be
position-independent: the load address is found from the samples of
functions whose name is unique in it.
"""
import collections
import re
import subprocess
import sys


def main():
    binary, data = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    dso = binary.rsplit("/", 1)[-1]

    nm = subprocess.run(["nm", "-C", binary], capture_output=True, text=True, check=True).stdout
    names = collections.defaultdict(list)
    for line in nm.splitlines():
        m = re.match(r"([0-9a-f]+) [tTwW] (.*)", line)
        if m:
            names[m.group(2)].append(int(m.group(1), 16))

    # Each lock-prefixed instruction, and the one after it -> that site.
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                         capture_output=True, text=True, check=True).stdout
    site_of = {}
    prev_lock = None
    for line in dis.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+(\S+)", line)
        if not m:
            continue
        addr = int(m.group(1), 16)
        if prev_lock is not None:
            site_of.setdefault(addr, prev_lock)
        prev_lock = addr if m.group(2) == "lock" else None
        if prev_lock is not None:
            site_of[addr] = addr

    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,symoff,dso"],
                            capture_output=True, text=True, check=True).stdout
    samples = script.splitlines()
    bases = collections.Counter()
    for line in samples:
        m = re.match(r"\s*([0-9a-f]+) (.*)\+0x([0-9a-f]+) \(", line)
        if m and dso in line:
            addrs = names.get(m.group(2))
            if addrs and len(addrs) == 1:
                bases[int(m.group(1), 16) - int(m.group(3), 16) - addrs[0]] += 1
    if not bases:
        sys.exit(f"no sample of {dso} in {data}")
    base = bases.most_common(1)[0][0]

    sites = collections.Counter()
    for line in samples:
        if dso not in line:
            continue
        site = site_of.get(int(line.split()[0], 16) - base)
        if site is not None:
            function = re.sub(r"\+0x[0-9a-f]+.*", "", " ".join(line.split()[1:-1]))
            sites[(site, function[:100])] += 1
    hits = sum(sites.values())
    print(f"{hits} of {len(samples)} samples ({100 * hits / len(samples):.1f} %) "
          "on or just after a lock-prefixed instruction\n")
    print("| samples | site | function |\n|---:|---|---|")
    for (site, function), n in sites.most_common(top):
        print(f"| {n} | {site:#x} | `{function}` |")


if __name__ == "__main__":
    main()
