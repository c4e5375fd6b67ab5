//! Flow control and connection lifetime against hostile or slow peers:
//! backpressure instead of disconnects, the short idle timeout for
//! unauthenticated connections, the close sequence that delivers the
//! goodbye, and keepalive. A second, well-behaved client is served
//! throughout each abuse.

#[path = "support/raw.rs"]
mod raw;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use raw::{goodbye, raw};
use remote_core::proto::{encode, CallId, ObjectId};
use remote_core::{
    remote, with_timeout, Connection, ConnectionBuilder, Error, Limits, Remote, Server,
    ServerHandle,
};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

#[remote]
pub trait Blob {
    /// `len` bytes of payload.
    async fn blob(&self, len: u32) -> Result<Bytes, Error>;
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error>;
    /// Keeps `obj` (so the connection holds a reference).
    async fn keep(&self, obj: Remote<dyn Blob>) -> Result<(), Error>;
    async fn echo(&self, data: Bytes) -> Result<Bytes, Error>;
}

#[derive(Default)]
struct Store(Mutex<Vec<Remote<dyn Blob>>>);

#[remote]
impl Blob for Store {
    async fn blob(&self, len: u32) -> Result<Bytes, Error> {
        Ok(Bytes::from(vec![7u8; len as usize]))
    }
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error> {
        Ok(a + b)
    }
    async fn keep(&self, obj: Remote<dyn Blob>) -> Result<(), Error> {
        self.0.lock().unwrap().push(obj);
        Ok(())
    }
    async fn echo(&self, data: Bytes) -> Result<Bytes, Error> {
        Ok(data)
    }
}

fn store() -> Remote<dyn Blob> {
    Remote::new(Arc::new(Store::default()))
}

async fn serve(limits: Limits) -> ServerHandle {
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| store())
}

/// A reader that takes at most 32 KiB per read and then pauses 1 ms.
struct Slow<R> {
    inner: R,
    scratch: Vec<u8>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Slow<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(p) = this.pause.as_mut() {
            if p.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        let want = buf.remaining().min(this.scratch.len());
        let mut tmp = ReadBuf::new(&mut this.scratch[..want]);
        match Pin::new(&mut this.inner).poll_read(cx, &mut tmp) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(tmp.filled());
                this.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(1))));
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

use std::future::Future;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_replies_reach_a_slow_but_reading_client() {
    let server = serve(Limits::default()).await;
    let addr = server.local_addr().strip_prefix("tcp://").unwrap();
    let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
    let slow = Slow {
        inner: r,
        scratch: vec![0; 32 << 10],
        pause: None,
    };
    let client = ConnectionBuilder::new()
        .over(slow, w, "slow reader")
        .await
        .unwrap();
    let other = Connection::connect(server.local_addr()).await.unwrap();
    let big = client.root::<dyn Blob>();
    // 128 replies of almost 1 MiB at once: 8 × max_write_queue.
    let len = (1u32 << 20) - 64;
    let calls = (0..128).map(|_| {
        let big = big.clone();
        tokio::spawn(with_timeout(Duration::from_secs(300), async move {
            big.blob(len).await
        }))
    });
    let calls: Vec<_> = calls.collect();
    // Meanwhile another client is served, and the slow one stays open.
    let bystander = other.root::<dyn Blob>();
    let mut served = 0;
    while !calls.iter().all(|c| c.is_finished()) {
        assert_eq!(bystander.add(served, 1).await.unwrap(), served + 1);
        served += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for c in calls {
        let reply = c.await.unwrap().expect("every large reply arrives");
        assert_eq!(reply.len(), len as usize);
        assert!(reply.iter().all(|b| *b == 7));
    }
    assert!(served > 0);
    assert!(!client.is_closed());
    assert_eq!(big.add(1, 2).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_calls_and_large_replies_at_once_do_not_hold_both_peers_up() {
    // Both sides over max_write_queue at once: the client with its calls,
    // the server with its replies. Each keeps reading what is not a call.
    let limits = Limits {
        max_write_queue: 1 << 20,
        write_stall_timeout: Duration::from_secs(3600),
        ..Limits::default()
    };
    let server = serve(limits.clone()).await;
    let client = ConnectionBuilder::new()
        .limits(limits)
        .connect(server.local_addr())
        .await
        .unwrap();
    let echo = client.root::<dyn Blob>();
    let data = Bytes::from(vec![3u8; 900_000]);
    let calls: Vec<_> = (0..48)
        .map(|_| {
            let (echo, data) = (echo.clone(), data.clone());
            tokio::spawn(with_timeout(Duration::from_secs(300), async move {
                echo.echo(data).await
            }))
        })
        .collect();
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap().len(), 900_000);
        }
    });
    all.await.expect("the peers held each other up");
    assert!(!client.is_closed());
}

#[tokio::test]
async fn an_idle_unauthenticated_connection_holding_nothing_gets_the_short_timeout() {
    let limits = Limits {
        // Long enough for the holder's call on a loaded machine.
        unauthenticated_idle_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(3600),
        ..Limits::default()
    };
    let server = serve(limits).await;
    // Connected first, and holds a reference: it must outlive the idle one.
    let holder = Connection::connect(server.local_addr()).await.unwrap();
    holder.root::<dyn Blob>().keep(store()).await.unwrap();
    let mut idle = raw(&server).await;
    let reason = goodbye(&mut idle).await.expect("a goodbye");
    assert!(
        reason.contains("unauthenticated_idle_timeout = 1s"),
        "{reason}"
    );
    assert!(!holder.is_closed());
    assert_eq!(holder.root::<dyn Blob>().add(2, 2).await.unwrap(), 4);
}

#[tokio::test]
async fn an_authenticated_connection_keeps_the_long_idle_timeout() {
    let limits = Limits {
        unauthenticated_idle_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let key = remote_core::auth::Key::new([7u8; 32]);
    let server = Server::builder()
        .limits(limits)
        .shared_secret(key.clone())
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| store());
    let client = remote_core::ConnectionBuilder::new()
        .credentials("someone", key)
        .connect(server.local_addr())
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(60), client.closed())
        .await
        .expect("the idle timeout closes the connection");
    assert!(
        reason
            .to_string()
            .contains("no traffic for idle_timeout = 1.5s"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_over_max_imports_receives_the_goodbye() {
    let server = serve(Limits::default()).await;
    let bystander = Connection::connect(server.local_addr()).await.unwrap();
    let mut s = raw::raw_with(&server, vec!["invalidate"]).await;
    // 14 MB of replies first, more than the kernel buffers between us hold,
    // so the goodbye has to wait in the server for us to read...
    let mut flood = Vec::new();
    for i in 0..14u32 {
        let mut f = encode::begin(32);
        encode::call_head(&mut f, CallId(100_000 + i), ObjectId(0), "blob", 60_000);
        f.extend_from_slice(&[0x91, 0xce]);
        f.extend_from_slice(&1_000_000u32.to_be_bytes());
        encode::finish(&mut f);
        flood.extend_from_slice(&f);
    }
    // ...then 20,000 calls, each handing over a distinct object of ours
    // (type-1 references 1..=20000): over max_imports = 10,000. Each is
    // followed by 1.2 KB of padding (an invalidation of a method the
    // server never cached, which it only acknowledges; a reply to no call
    // is a violation), so what follows the violation (12 MB) is more than
    // the kernel buffers take: our writes block until the server reads them.
    let long_name = "x".repeat(1200);
    for i in 0..20_000u32 {
        let pad = remote_core::proto::encode_invalidate(
            u64::from(i) + 1,
            ObjectId(0),
            &[long_name.as_str()],
        );
        let mut f = encode::begin(32);
        encode::call_head(&mut f, CallId(i), ObjectId(0), "keep", 60_000);
        f.extend_from_slice(&[0x91, 0xd6, 0x01]);
        f.extend_from_slice(&(i + 1).to_be_bytes());
        encode::finish(&mut f);
        f.extend_from_slice(&pad);
        flood.extend_from_slice(&f);
    }
    // Flood, then read: the server closes while our frames are unread.
    let _ = s.write_all(&flood).await;
    let reason = goodbye(&mut s).await;
    let reason = reason.expect("the goodbye arrives despite our unread frames");
    assert!(
        reason.contains("protocol violation") && reason.contains("10000"),
        "{reason}"
    );
    assert_eq!(bystander.root::<dyn Blob>().add(1, 1).await.unwrap(), 2);
}
