#!/usr/bin/env bash
# Builds the chat page: remote-chat-web for wasm32, then wasm-bindgen
# (--target web) into OUT (default: <target dir>/chat-web), next to a copy
# of static/index.html. Nothing generated is checked in.
#
#   examples/chat-web/build.sh [OUT]
#   cargo run --example chat -- server ws://127.0.0.1:7001/ --web target/chat-web
#
# Needs the wasm32-unknown-unknown target and wasm-bindgen-cli of the same
# version as the wasm-bindgen crate in Cargo.lock (.ci/run installs both).
set -euo pipefail
cd "$(dirname "$0")/../.."
target_dir=${CARGO_TARGET_DIR:-$(pwd)/target}
out=${1:-$target_dir/chat-web}

cargo build -q -p remote-chat-web --target wasm32-unknown-unknown
rm -rf "$out/pkg"
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out/pkg" \
  "$target_dir/wasm32-unknown-unknown/debug/remote_chat_web.wasm"
cp examples/chat-web/static/index.html "$out/index.html"
echo "chat page built in $out"
