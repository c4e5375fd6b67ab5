#!/usr/bin/env python3
"""What `#[remote]` costs a user's build, against tarpc 0.38's `#[tarpc::service]`.

    benches/compile-time/measure.sh [--runs N] [--only timings|static]

Generates the crates of gen.py under target/compile-time/ws, builds their
dependencies once, then for each crate:

- timings (median of N runs, default 5): `touch src/lib.rs` and rebuild the
  crate alone, release and debug (debug is incremental, as cargo's default);
  CPU seconds (user + system) for the derived figures, wall clock shown too;
- deterministic figures: the debug rlib's size, the lines of
  `-Zunpretty=expanded`, and the functions instantiated in the crate
  (`-Zprint-mono-items`, release). These use the stable compiler with
  RUSTC_BOOTSTRAP=1 in a separate target directory (so the timed one is not
  rebuilt).

Prints a markdown table of the raw figures and one of the derived ones (per
method = (50-method - 1-method) / 49; fixed cost = 1-method trait - no macro).
Works offline: tarpc is a dependency of benches/, so it is in the registry cache.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BASE = os.path.join(REPO, "target", "compile-time")
WS = os.path.join(BASE, "ws")  # replaced by --tag
TARGET = os.path.join(BASE, "target")
TARGET_Z = os.path.join(BASE, "target-z")
CRATES = ["none"] + [f"{s}_{k}_{n}" for s in ("ours", "tarpc") for k in ("trait", "full") for n in (1, 50)]


def cargo(args, target, bootstrap=False, capture=False):
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    env.pop("RUSTFLAGS", None)
    if bootstrap:
        env["RUSTC_BOOTSTRAP"] = "1"
    r = subprocess.run(["cargo", args[0], "--offline"] + args[1:], cwd=WS, env=env,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"cargo {' '.join(args)} failed:\n{r.stderr[-4000:]}")
    return r.stdout


def rebuild_seconds(crate, release):
    """(wall, CPU) seconds of one rebuild. CPU time (user + system of cargo
    and rustc) is what the derived figures use: on a shared machine it moves
    far less with the load than the wall clock does."""
    os.utime(os.path.join(WS, crate, "src", "lib.rs"))
    t = time.monotonic()
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    cargo(["build", "-p", crate] + (["--release"] if release else []), TARGET)
    r2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r2.ru_utime - r.ru_utime) + (r2.ru_stime - r.ru_stime)
    return time.monotonic() - t, cpu


def timings(runs):
    out = {}
    for release in (True, False):
        cargo(["build", "--workspace"] + (["--release"] if release else []), TARGET)
        for c in CRATES:
            prof = "release" if release else "debug"
            samples = [rebuild_seconds(c, release) for _ in range(runs)]
            out[(c, prof)] = statistics.median(cpu for _, cpu in samples)
            out[(c, prof + "-wall")] = statistics.median(wall for wall, _ in samples)
            print(f"  {c} {prof} (wall/cpu): "
                  + " ".join(f"{w:.2f}/{u:.2f}" for w, u in samples), file=sys.stderr)
    return out


def static():
    out = {}
    for c in CRATES:
        rlib = os.path.join(TARGET, "debug", f"lib{c}.rlib")
        out[(c, "rlib")] = os.path.getsize(rlib)
        text = cargo(["rustc", "-p", c, "--profile", "check", "--", "-Zunpretty=expanded"],
                     TARGET_Z, bootstrap=True, capture=True)
        out[(c, "expanded")] = sum(1 for line in text.splitlines() if line.strip())
        os.utime(os.path.join(WS, c, "src", "lib.rs"))
        text = cargo(["rustc", "-p", c, "--release", "--", "-Zprint-mono-items"],
                     TARGET_Z, bootstrap=True, capture=True)
        items = [line for line in text.splitlines() if line.startswith("MONO_ITEM fn ")]
        out[(c, "mono")] = len(items)
        with open(os.path.join(WS, f"mono-{c}.txt"), "w") as f:
            f.write("\n".join(sorted(items)) + "\n")
    return out


def per_method(v, sysname, kind, what):
    return (v[(f"{sysname}_{kind}_50", what)] - v[(f"{sysname}_{kind}_1", what)]) / 49


def report(v, have_t, have_s):
    print("| crate | release rebuild, CPU (wall) s | debug rebuild, CPU (wall) s "
          "| debug rlib (KiB) | expanded lines | mono items |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in CRATES:
        cells = [f"{v[(c, k)]:.2f} ({v[(c, k + '-wall')]:.2f})" if (c, k) in v else ""
                 for k in ("release", "debug")]
        cells += [f"{v[(c, 'rlib')] / 1024:.0f}" if (c, "rlib") in v else ""]
        cells += [str(v[(c, k)]) if (c, k) in v else "" for k in ("expanded", "mono")]
        print(f"| {c} | " + " | ".join(cells) + " |")
    print()
    print("| figure | remote | tarpc | ratio |")
    print("|---|---:|---:|---:|")

    def row(name, a, b, unit, fmt="{:.1f}"):
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"| {name} | {fmt.format(a)} {unit} | {fmt.format(b)} {unit} | {ratio} |")

    if have_t:
        for kind, label in (("trait", "trait only"), ("full", "trait + impl + server + client")):
            row(f"release rebuild per method (CPU), {label}",
                per_method(v, "ours", kind, "release") * 1e3, per_method(v, "tarpc", kind, "release") * 1e3, "ms")
        for kind, label in (("trait", "trait only"), ("full", "trait + impl + server + client")):
            row(f"debug incremental rebuild per method (CPU), {label}",
                per_method(v, "ours", kind, "debug") * 1e3, per_method(v, "tarpc", kind, "debug") * 1e3, "ms")
        for prof in ("release", "debug"):
            row(f"fixed cost of a 1-method trait over no macro (CPU), {prof}",
                v[("ours_trait_1", prof)] - v[("none", prof)], v[("tarpc_trait_1", prof)] - v[("none", prof)],
                "s", "{:.2f}")
    if have_s:
        for kind in ("trait", "full"):
            row(f"debug rlib per method, {kind}", per_method(v, "ours", kind, "rlib") / 1024,
                per_method(v, "tarpc", kind, "rlib") / 1024, "KiB")
        row("debug rlib of a 1-method trait", v[("ours_trait_1", "rlib")] / 1024,
            v[("tarpc_trait_1", "rlib")] / 1024, "KiB", "{:.0f}")
        for kind in ("trait", "full"):
            row(f"expanded lines per method, {kind}", per_method(v, "ours", kind, "expanded"),
                per_method(v, "tarpc", kind, "expanded"), "")
        for kind in ("trait", "full"):
            for n in (1, 50):
                row(f"functions instantiated, {kind}, {n} method(s)", v[(f"ours_{kind}_{n}", "mono")],
                    v[(f"tarpc_{kind}_{n}", "mono")], "", "{:.0f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["timings", "static"])
    ap.add_argument("--repo", default=REPO, help="the remote checkout to measure (default: this one)")
    ap.add_argument("--tag", default="ws", help="workspace directory name under target/compile-time")
    a = ap.parse_args()
    global WS
    WS = os.path.join(BASE, a.tag)
    subprocess.run([sys.executable, os.path.join(HERE, "gen.py"), WS, a.repo], check=True)
    v = {}
    if a.only != "static":
        v.update(timings(a.runs))
    if a.only != "timings":
        if not any(k == "rlib" for _, k in v):
            cargo(["build", "--workspace"], TARGET)
        v.update(static())
    report(v, a.only != "static", a.only != "timings")


main()
