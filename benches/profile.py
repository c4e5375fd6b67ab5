#!/usr/bin/env python3
"""Where one call's instructions go, by area (self cost, per call).

    benches/profile.py SYSTEM [SYSTEM...]

Reads the two profiles benches/callgrind.sh left for each SYSTEM
($OUT/callgrind.SYSTEM.{CALLS_LO,CALLS_HI}.out, defaults target/callgrind,
1000, 5000), runs `callgrind_annotate` on both, subtracts per function
(set-up, warm-up and exit cancel out) and divides by CALLS_HI - CALLS_LO.
Prints each area's instructions per call, its share, and its top functions.
Areas are matched on the function's symbol, first match wins (see AREAS).
Kernel time (syscalls themselves) is not counted by callgrind.
"""
import os
import re
import subprocess
import sys

OUT = os.environ.get("OUT", "target/callgrind")
LO = int(os.environ.get("CALLS_LO", "1000"))
HI = int(os.environ.get("CALLS_HI", "5000"))

AREAS = [
    ("allocation (malloc/free)", r"malloc|free|realloc|calloc|__rust_alloc|__rust_dealloc|__rdl_|stats_alloc|alloc::alloc|alloc::raw_vec|RawVec"),
    ("memcpy/memmove/memset", r"mem(cpy|move|set|cmp)"),
    ("timers and clock", r"tokio::time|clock_gettime|vdso|Instant::now|Timespec|duration_since|deadline|Deadline|Sleep|timeout"),
    ("tokio tasks, wake-ups, park", r"tokio::runtime|tokio::task|tokio::loom|Waker|waker|wake|park|futures_util::task|futures_task|futures_util::stream::futures_unordered|LocalSet|tokio::sync|futures_channel|cancellation"),
    ("I/O glue (tokio io, mio; not the kernel)", r"tokio::io|tokio::net|tokio_util::io|mio::|epoll|__libc_(read|write|recv|send)|\bread\b|\bwrite\b|writev|recvfrom|sendto|poll_read|poll_write|tokio_util::compat"),
    ("connection loops, call/reply logic (remote-core)", r"remote_core::driver::io::(read|write)_loop"),
    ("thread-locals (runtime context, task-local deadline)", r"LocalKey|thread_local|task_local"),
    ("framing", r"remote_core::proto::frame|LengthDelimited|tokio_util::codec|remote_core::codec|bytes::"),
    ("decoding", r"decode|Deserializ|serde::de|rmp::decode|bincode::de|::read_|Reader|skip_value|parse"),
    ("encoding", r"encode|Serializ|serde::ser|rmp::encode|bincode::ser|::write_|Builder"),
    ("hashing and tables", r"hash|Hash|slab|Slab|indexmap|btree"),
    ("connection loops, call/reply logic (remote-core)", r"remote_core"),
    ("peer library logic (tarpc / capnp / remoc)", r"tarpc|capnp|remoc|chmux"),
    ("bench harness", r"counts::|common::|remote_benches"),
]

LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?)\s*(?:\[[^\]]*\])?\s*$")


def functions(path):
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no", path],
        check=True, capture_output=True, text=True).stdout
    costs = {}
    started = False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started:
            continue
        m = LINE.match(line)
        if m:
            name = m.group(2)
            name = name.split(":", 1)[1] if ":" in name and not name.startswith("<") else name
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def area(name):
    for label, pat in AREAS:
        if re.search(pat, name):
            return label
    return "other"


def main():
    systems = sys.argv[1:] or ["ours"]
    for s in systems:
        lo = functions(f"{OUT}/callgrind.{s}.{LO}.out")
        hi = functions(f"{OUT}/callgrind.{s}.{HI}.out")
        per = {}
        for name in set(lo) | set(hi):
            d = (hi.get(name, 0) - lo.get(name, 0)) / (HI - LO)
            if d:
                per[name] = d
        total = sum(per.values())
        by_area = {}
        for name, d in per.items():
            by_area.setdefault(area(name), []).append((d, name))
        print(f"### {s}: {total:,.0f} instructions per call (self cost by area)\n")
        print("| area | instructions/call | share | top functions (self) |")
        print("|---|---:|---:|---|")
        for label, items in sorted(by_area.items(), key=lambda kv: -sum(d for d, _ in kv[1])):
            sub = sum(d for d, _ in items)
            if abs(sub) < 0.5:
                continue
            items.sort(reverse=True)
            top = "; ".join(f"`{short(n)}` {d:,.0f}" for d, n in items[:3])
            print(f"| {label} | {sub:,.0f} | {100 * sub / total:.0f} % | {top} |")
        print()


def short(name):
    name = re.sub(r"<[^<>]*>", "", re.sub(r"<[^<>]*>", "", name))
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    parts = name.split("::")
    return "::".join(parts[-3:])[:70]


if __name__ == "__main__":
    main()
