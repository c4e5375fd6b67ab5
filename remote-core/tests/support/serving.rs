//! Serving for tests: a TCP server on 127.0.0.1, and one root object
//! served to several clients, so a write through one is seen by the
//! others: in memory (a connected pair per client) or over TCP (a server
//! and two clients). Included by `#[path = "support/serving.rs"] mod
//! serving;`.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use remote_core::{
    Connection, ConnectionBuilder, Interface, Limits, Peer, Remote, Server, ServerHandle,
};

/// A TCP server on 127.0.0.1 (a free port) with `limits`, serving what
/// `factory` makes for each connection.
pub async fn tcp<T: ?Sized + Interface>(
    limits: Limits,
    factory: impl Fn(&Peer) -> Remote<T> + Send + Sync + 'static,
) -> ServerHandle {
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(factory)
}

/// A client connected in memory to a connection serving `root` with
/// `limits`: `(client, server's end)`.
pub async fn in_memory<T: ?Sized + Interface>(
    root: Remote<T>,
    limits: Limits,
) -> (Connection, Connection) {
    Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().limits(limits).serve(root),
    )
    .await
    .unwrap()
}

/// A TCP server with `limits` serving `root` to every connection, and two
/// clients connected to it.
pub async fn two_clients<T: ?Sized + Interface>(
    limits: Limits,
    root: Arc<T>,
) -> (ServerHandle, Connection, Connection) {
    let server = Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let handle = server.serve(move |_| Remote::new(root.clone()));
    let a = ConnectionBuilder::new().connect(&addr).await.unwrap();
    let b = ConnectionBuilder::new().connect(&addr).await.unwrap();
    (handle, a, b)
}

/// The object named `name` in `registry`, made by `make` the first time:
/// every connection that asks for the same name gets the same object.
pub fn named<T: ?Sized + Interface>(
    registry: &Mutex<HashMap<String, Arc<T>>>,
    name: String,
    make: impl FnOnce() -> Arc<T>,
) -> Remote<T> {
    let mut objects = registry.lock().unwrap();
    Remote::new(objects.entry(name).or_insert_with(make).clone())
}
