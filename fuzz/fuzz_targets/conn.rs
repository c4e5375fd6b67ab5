//! A served `#[remote]` object behind a Unix socket, fed the fuzzer's bytes
//! as a client's raw stream (after a valid hello if the first byte's low
//! bit is set, so the fuzzer gets past the handshake): never panics; the
//! server closes the connection once the client's stream ends, and then
//! holds no connection, export, object or byte of its memory budget.
#![no_main]

#[path = "common/server.rs"]
mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use remote_core::ServerHandle;

fn server() -> &'static ServerHandle {
    static S: OnceLock<ServerHandle> = OnceLock::new();
    S.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("remote-fuzz-conn-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        common::runtime().block_on(common::serve(&format!("unix://{}", path.display())))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let server = server();
    let mut input = Vec::new();
    if mode & 1 == 1 {
        let features = if mode & 2 == 2 {
            vec!["pipeline"]
        } else {
            vec![]
        };
        input.extend(common::hello(features));
    }
    input.extend_from_slice(data);
    let path = server
        .local_addr()
        .strip_prefix("unix://")
        .unwrap()
        .to_owned();
    common::runtime().block_on(async {
        let s = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect");
        common::play(s, &input).await;
        common::settled(server).await;
    });
});
