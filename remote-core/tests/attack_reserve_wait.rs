//! A frame in progress whose reservation in the memory budget waits
//! (PROTOCOL.md §9) while its peer keeps sending: the watch that reads
//! meanwhile may complete the frame and read past it, and a wait the
//! reader's timer interrupted must not be taken for a budget wait later.
//! (Both found by a red-team pass of the watch: the first panicked the
//! connection's reader, the second closed a peer merely slow to read.)

#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[remote]
pub trait Big {
    async fn big(&self, n: u32) -> Result<String, Error>;
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error>;
}

struct Impl;

#[remote]
impl Big for Impl {
    async fn big(&self, n: u32) -> Result<String, Error> {
        Ok("x".repeat(n as usize))
    }
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error> {
        Ok(a + b)
    }
}

/// A server with a 1 MiB budget (and `idle` as both idle timeouts), and a
/// client socket with a 4 KiB receive buffer that asked for a 16 MB reply
/// and reads none of it yet: the budget stays exhausted and output stays
/// queued, so even a small frame's reservation waits.
async fn blocked(idle: Duration) -> (ServerHandle, TcpStream) {
    let limits = Limits {
        memory_budget: 1 << 20,
        max_frame_len: 32 << 20,
        max_write_queue: 64 << 20,
        idle_timeout: idle,
        unauthenticated_idle_timeout: idle,
        ..Limits::default()
    };
    let server = Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Big>));
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock
        .connect(raw::tcp_addr(&server).parse().unwrap())
        .await
        .unwrap();
    s.write_all(&raw::hello(vec![])).await.unwrap();
    let f = raw::frame(&mut s).await.expect("hello");
    assert_eq!(raw::kind(&f), raw::HELLO);
    s.write_all(&raw::call(
        1,
        0,
        "big",
        600_000,
        &[0x91, 0xce, 0x01, 0x00, 0x00, 0x00],
    ))
    .await
    .unwrap();
    assert!(raw::eventually(|| server.buffered_bytes() >= 1 << 20).await);
    (server, s)
}

/// Bytes `server` has read from its peers so far.
fn read_in(server: &ServerHandle) -> u64 {
    server.stats().calls.bytes_in
}

/// Waits (at most 60 s) until `server` has read `n` bytes in all.
async fn read_in_all(server: &ServerHandle, n: u64) {
    assert!(
        raw::eventually(|| read_in(server) >= n).await,
        "the server read {} bytes in all, not {n}",
        read_in(server)
    );
}

/// Sends the first 6 bytes of call 2, `add(2, 3)`, and waits until the
/// server has read them (its reservation then waits); returns the frame.
async fn add_2_head(server: &ServerHandle, s: &mut TcpStream) -> Vec<u8> {
    let add = raw::call(2, 0, "add", 600_000, &[0x92, 0x02, 0x03]);
    let before = read_in(server);
    s.write_all(&add[..6]).await.unwrap();
    read_in_all(server, before + 6).await;
    add
}

/// Reads the big reply (giving the budget room back), then call 2's.
async fn big_reply_then_add_2(s: &mut TcpStream) {
    let f = raw::bounded(raw::frame(s)).await.expect("the big reply");
    assert_eq!(raw::kind(&f), raw::RETURN, "{:?}", raw::error_of(&f));
    let f = raw::bounded(raw::frame(s)).await.expect("add 2");
    assert_eq!(f, [0x93, 0x02, 0x02, 0x05]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_completed_and_overrun_while_its_reservation_waits_is_read_whole() {
    let (server, mut s) = blocked(Duration::from_secs(300)).await;
    // A small call's head only: its reservation waits.
    let add = add_2_head(&server, &mut s).await;
    // Its rest and a whole second call behind it, read by the watch into
    // the buffer's spare room.
    let mut rest = add[6..].to_vec();
    rest.extend(raw::call(3, 0, "add", 600_000, &[0x92, 0x04, 0x05]));
    let before = read_in(&server);
    s.write_all(&rest).await.unwrap();
    read_in_all(&server, before + rest.len() as u64).await;
    // Reading the big reply gives the budget room back.
    big_reply_then_add_2(&mut s).await;
    let f = raw::bounded(raw::frame(&mut s)).await.expect("add 3");
    assert_eq!(f, [0x93, 0x02, 0x03, 0x09]);
    drop(s);
    assert!(
        raw::eventually(|| server.connections() == 0 && server.buffered_bytes() == 0).await,
        "{} bytes left counted",
        server.buffered_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_not_closed_for_a_budget_wait_it_no_longer_has() {
    let (server, mut s) = blocked(Duration::from_secs(1)).await;
    // A small call's head: its reservation waits; then exactly its rest,
    // which the watch reads, completing the frame while the reservation
    // still waits (or the reader's timer interrupted it).
    let add = add_2_head(&server, &mut s).await;
    s.write_all(&add[6..]).await.unwrap();
    // The client reads nothing for 3.5 s (its writer's stall limit is
    // 30 s): merely slow, it is not closed.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    big_reply_then_add_2(&mut s).await;
}
