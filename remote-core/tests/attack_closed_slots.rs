//! A closed connection keeps its `max_connections` slot until its socket is
//! gone. The close drains what the peer still sends and writes the goodbye
//! for up to 5 s; the slot was given back at the close, so a peer that made
//! each connection close at once (a frame over `max_frame_len`) and then
//! kept the socket open had 2,000 sockets held on a server of 32 slots
//! (red-team pass 35). `attack_failed_handshake_slots.rs`: the same for a
//! connection whose handshake fails.

#[path = "support/add.rs"]
mod add;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::{Duration, Instant};

use add::{Add, Impl};
use remote_core::{Limits, Remote, Server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MAX: usize = 4;
/// How long a close drains the peer's input (`DRAIN_TIME`).
const DRAIN: Duration = Duration::from_secs(5);

/// A connection past the handshake that the server closes at once (a frame
/// header over `max_frame_len`), its goodbye read and its socket kept open.
async fn closed_but_open(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&raw::hello(vec![])).await.unwrap();
    let hello = raw::frame(&mut s).await.expect("a hello");
    assert_eq!(raw::kind(&hello), raw::HELLO);
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let why = raw::goodbye(&mut s).await.expect("a goodbye");
    assert!(why.contains("max_frame_len"), "{why}");
    s
}

/// Whether a new connection's hello is answered (or it is refused: its
/// reason).
async fn try_connect(addr: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // A refused connection may be shut before the hello is written.
    let _ = s.write_all(&raw::hello(vec![])).await;
    match raw::frame(&mut s).await {
        Some(f) if raw::kind(&f) == raw::HELLO => Ok(()),
        Some(f) if raw::kind(&f) == raw::GOODBYE => {
            let mut r = remote_core::proto::Reader::new(&f[2..]);
            Err(r.str().unwrap().to_owned())
        }
        other => Err(format!("neither a hello nor a goodbye: {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_holds_its_slot_until_its_socket_is_gone() {
    let server = Server::builder()
        .limits(Limits {
            max_connections: MAX,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Add>));
    let addr = raw::tcp_addr(&server);
    let first = closed_but_open(&addr).await;
    let since = Instant::now();
    let mut lingering = vec![first];
    for _ in 1..MAX {
        lingering.push(closed_but_open(&addr).await);
    }
    // Every slot is still a socket's: the next connection is refused.
    match try_connect(&addr).await {
        Err(why) => assert!(why.contains("max_connections"), "{why}"),
        // Only if the machine was so slow that the first drains ended.
        Ok(()) => assert!(
            since.elapsed() >= DRAIN,
            "a connection past max_connections = {MAX} was served while {MAX} closed ones \
             still held their sockets"
        ),
    }
    assert_eq!(server.connections(), MAX);
    // The peers close their sockets: the drains end at once, and the slots
    // are given back.
    drop(lingering);
    let served = raw::bounded(async {
        loop {
            match try_connect(&addr).await {
                Ok(()) => return,
                Err(why) => assert!(why.contains("max_connections"), "{why}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    served.await;
}
