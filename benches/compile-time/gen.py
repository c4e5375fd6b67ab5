#!/usr/bin/env python3
"""Generates the crates that benches/compile-time/measure.sh builds.

    gen.py OUT_DIR REPO_ROOT

Writes a Cargo workspace to OUT_DIR with one crate per case:

    none            a plain trait of one method, no macro (the baseline)
    ours_trait_N    a `#[remote]` trait of N methods
    ours_full_N     the same trait, an implementation, a server and a client
                    calling every method once
    tarpc_trait_N   the same trait under tarpc 0.38's `#[tarpc::service]`
    tarpc_full_N    ... with an implementation, server and client (msgpack
                    over a tokio duplex, as benches/benches/common/tarpc_sys.rs)

for N in 1 and 50. The N methods cycle through ten signatures. Every crate has
the same dependencies, so only the code in it differs.
"""
import os
import shutil
import sys

# (name suffix, ours args, tarpc args, return type, ours body, call args, blocking)
SIGS = [
    ("a", "x: u64", "u64", "x", "1"),
    ("b", "s: String", "String", "s", '"s".to_string()'),
    ("c", "", "()", "()", ""),
    ("d", "a: u32, b: u32, c: bool", "Vec<u32>", "if c { vec![a, b] } else { vec![] }", "1, 2, true"),
    ("e", "v: Vec<u8>", "usize", "v.len()", "vec![1u8]"),
    ("f", "o: Option<String>", "Option<u64>", "o.map(|s| s.len() as u64)", "None"),
    ("g", "p: Point", "Point", "p", "Point { x: 1, y: 2, label: String::new() }"),
    ("h", "k: String, v: i64", "bool", "k.len() as i64 == v", '"k".to_string(), 1'),
    ("i", "xs: Vec<String>", "(u64, String)", "(xs.len() as u64, xs.concat())", "vec![]"),
    ("j", "n: u64", "u64", "n + 1", "2"),  # a blocking (plain `fn`) method in ours
]


def methods(n):
    for k in range(n):
        rep, (suffix, args, ret, body, call) = divmod(k, len(SIGS))[0], SIGS[k % len(SIGS)]
        yield f"m{rep}_{suffix}", args, ret, body, call, suffix == "j"


def names(args):
    return [a.split(":")[0].strip() for a in args.split(",") if a.strip()]


def point(n, derive):
    if n < 7:
        return ""
    return f"""
#[derive({derive}, Debug, Clone, PartialEq)]
pub struct Point {{
    pub x: i32,
    pub y: i32,
    pub label: String,
}}
"""


def ours(n, full):
    out = ["#![allow(dead_code, unused_variables)]",
           "use remote_core::{remote, Error};",
           "use serde as _; use tarpc as _; use tokio as _; use futures as _; use tokio_serde as _;",
           point(n, "remote_core::Wire"),
           "#[remote]\npub trait Api {"]
    for name, args, ret, _, _, blocking in methods(n):
        sep = ", " if args else ""
        kw = "fn" if blocking else "async fn"
        out.append(f"    {kw} {name}(&self{sep}{args}) -> Result<{ret}, Error>;")
    out.append("}")
    if full:
        out.append("pub struct Svc;\n#[remote]\nimpl Api for Svc {")
        for name, args, ret, body, _, blocking in methods(n):
            sep = ", " if args else ""
            kw = "fn" if blocking else "async fn"
            out.append(f"    {kw} {name}(&self{sep}{args}) -> Result<{ret}, Error> {{ Ok({body}) }}")
        out.append("}")
        out.append("""
pub async fn serve_and_call() -> Result<(), Error> {
    use remote_core::{Connection, ConnectionBuilder, Remote};
    let root: Remote<dyn Api> = Remote::new(std::sync::Arc::new(Svc));
    let (_server, client) =
        Connection::pair(ConnectionBuilder::new().serve(root), ConnectionBuilder::new()).await?;
    let api = client.root::<dyn Api>();""")
        for name, args, ret, body, call, blocking in methods(n):
            aw = "" if blocking else ".await"
            out.append(f"    let _ = api.{name}({call}){aw};")
        out.append("    Ok(())\n}")
    return "\n".join(out) + "\n"


def tarpc(n, full):
    out = ["#![allow(dead_code, unused_variables)]",
           "use remote_core as _; use tokio as _; use futures as _; use tokio_serde as _;",
           point(n, "serde::Serialize, serde::Deserialize"),
           "#[tarpc::service]\npub trait Api {"]
    for name, args, ret, _, _, _ in methods(n):
        out.append(f"    async fn {name}({args}) -> {ret};")
    out.append("}")
    if full:
        out.append("#[derive(Clone)]\npub struct Svc;\nimpl Api for Svc {")
        for name, args, ret, body, _, _ in methods(n):
            sep = ", " if args else ""
            out.append(f"    async fn {name}(self, _: tarpc::context::Context{sep}{args}) -> {ret} {{ {body} }}")
        out.append("}")
        out.append("""
pub async fn serve_and_call() -> Result<(), tarpc::client::RpcError> {
    use futures::StreamExt;
    use tarpc::server::{BaseChannel, Channel};
    use tarpc::tokio_serde::formats::MessagePack;
    use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
    let (a, b) = tokio::io::duplex(64 << 10);
    let server: tarpc::serde_transport::Transport<_, tarpc::ClientMessage<ApiRequest>, tarpc::Response<ApiResponse>, _> =
        tarpc::serde_transport::new(Framed::new(b, LengthDelimitedCodec::new()), MessagePack::default());
    tokio::spawn(BaseChannel::with_defaults(server).execute(Svc.serve()).for_each(|r| async move {
        tokio::spawn(r);
    }));
    let transport = tarpc::serde_transport::new(Framed::new(a, LengthDelimitedCodec::new()), MessagePack::default());
    let api = ApiClient::new(tarpc::client::Config::default(), transport).spawn();""")
        for name, args, ret, body, call, _ in methods(n):
            sep = ", " if call else ""
            out.append(f"    let _ = api.{name}(tarpc::context::current(){sep}{call}).await?;")
        out.append("    Ok(())\n}")
    return "\n".join(out) + "\n"


def none():
    return """#![allow(dead_code, unused_variables)]
use remote_core as _; use serde as _; use tarpc as _; use tokio as _; use futures as _; use tokio_serde as _;
pub trait Api {
    fn m0_a(&self, x: u64) -> u64;
}
"""


def main():
    out, repo = sys.argv[1], os.path.abspath(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    crates = {"none": none()}
    for n in (1, 50):
        crates[f"ours_trait_{n}"] = ours(n, False)
        crates[f"ours_full_{n}"] = ours(n, True)
        crates[f"tarpc_trait_{n}"] = tarpc(n, False)
        crates[f"tarpc_full_{n}"] = tarpc(n, True)
    members = ", ".join(f'"{c}"' for c in crates)
    with open(os.path.join(out, "Cargo.toml"), "w") as f:
        f.write(f"""[workspace]
resolver = "2"
members = [{members}]

[workspace.dependencies]
remote-core = {{ path = "{repo}/remote-core" }}
serde = {{ version = "1", features = ["derive"] }}
tarpc = {{ version = "0.38", features = ["tokio1", "serde-transport"] }}
tokio-serde = {{ version = "0.9", features = ["messagepack"] }}
tokio = {{ version = "1", features = ["rt", "macros", "io-util"] }}
futures = "0.3"
""")
    lock = os.path.join(repo, "Cargo.lock")
    if not os.path.exists(os.path.join(out, "Cargo.lock")):
        shutil.copy(lock, os.path.join(out, "Cargo.lock"))
    for name, src in crates.items():
        d = os.path.join(out, name, "src")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(out, name, "Cargo.toml"), "w") as f:
            f.write(f"""[package]
name = "{name}"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
path = "src/lib.rs"

[dependencies]
remote-core.workspace = true
serde.workspace = true
tarpc.workspace = true
tokio-serde.workspace = true
tokio.workspace = true
futures.workspace = true
""")
        path = os.path.join(d, "lib.rs")
        old = open(path).read() if os.path.exists(path) else None
        if old != src:
            with open(path, "w") as f:
                f.write(src)


main()
