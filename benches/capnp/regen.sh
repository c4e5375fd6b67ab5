#!/usr/bin/env bash
# Regenerates bench_capnp.rs from bench.capnp. Needs the Cap'n Proto schema
# compiler (Debian: `apt-get install capnproto`) and cargo (it builds a
# throw-away program using the capnpc crate, at the version matching the
# `capnp` dependency, in a temporary directory).
#
# The generated file is checked in, so building the benches (and CI) needs
# neither capnp nor capnpc. It refers to itself as
# `crate::common::capnp_sys::bench_capnp` (capnpc's parent-module option), the
# place `common/capnp_sys.rs` includes it. The checked-in file was produced
# by this script with capnp 0.9.2 and capnpc 0.27.0.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
cat >"$tmp/Cargo.toml" <<'TOML'
[package]
name = "regen-bench-capnp"
version = "0.0.0"
edition = "2021"
publish = false
[workspace]
[dependencies]
capnpc = "=0.27.0"
TOML
cat >"$tmp/src/main.rs" <<'RS'
fn main() {
    capnpc::CompilerCommand::new()
        .src_prefix(".")
        .file("bench.capnp")
        .output_path(".")
        .default_parent_module(vec!["common".into(), "capnp_sys".into()])
        .run()
        .expect("capnp compile");
}
RS
cargo run -q --manifest-path "$tmp/Cargo.toml" --target-dir "$tmp/target"
echo "regenerated $(pwd)/bench_capnp.rs"
