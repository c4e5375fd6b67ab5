//! A small `#[remote]` server fed a hostile client's raw bytes, shared by
//! the `conn` and `ws_conn` targets: one current-thread runtime and one
//! server per process, a fresh connection per input. After the input (and
//! the end of the client's stream), the server must close the connection
//! within [`BOUND`], and then hold no connection, no export, no byte of
//! its memory budget, and no object made for the connection.

use std::sync::atomic::{AtomicIsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use remote_core::proto::{encode, Hello};
use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::Runtime;

/// How long the server may take to close a connection whose client's
/// stream ended, and to give everything back after (wall clock: a real
/// socket; the server's own timeouts below are all shorter).
pub const BOUND: Duration = Duration::from_secs(20);

#[remote]
pub trait Fz {
    async fn nop(&self) -> Result<(), Error>;
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error>;
    async fn echo(&self, b: Vec<u8>) -> Result<Vec<u8>, Error>;
    async fn make(&self) -> Result<Remote<dyn Fz>, Error>;
    async fn many(&self, n: u32) -> Result<Vec<Remote<dyn Fz>>, Error>;
    async fn take(&self, other: Remote<dyn Fz>) -> Result<(), Error>;
    async fn same(&self, other: Remote<dyn Fz>) -> Result<Remote<dyn Fz>, Error>;
    async fn back(&self, other: Remote<dyn Fz>) -> Result<i64, Error>;
    async fn hang(&self, ms: u64) -> Result<(), Error>;
    async fn fail(&self) -> Result<(), Error>;
}

/// Objects made and not dropped yet.
pub static LIVE: AtomicIsize = AtomicIsize::new(0);

/// (It keeps no reference: one to itself would be a cycle, never dropped.)
struct Obj;

impl Drop for Obj {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, SeqCst);
    }
}

pub fn fresh() -> Remote<dyn Fz> {
    LIVE.fetch_add(1, SeqCst);
    Remote::new(Arc::new(Obj) as Arc<dyn Fz>)
}

#[remote]
impl Fz for Obj {
    async fn nop(&self) -> Result<(), Error> {
        Ok(())
    }
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error> {
        Ok(a.wrapping_add(b))
    }
    async fn echo(&self, b: Vec<u8>) -> Result<Vec<u8>, Error> {
        Ok(b)
    }
    async fn make(&self) -> Result<Remote<dyn Fz>, Error> {
        Ok(fresh())
    }
    async fn many(&self, n: u32) -> Result<Vec<Remote<dyn Fz>>, Error> {
        Ok((0..n.min(20)).map(|_| fresh()).collect())
    }
    async fn take(&self, other: Remote<dyn Fz>) -> Result<(), Error> {
        drop(other);
        Ok(())
    }
    async fn same(&self, other: Remote<dyn Fz>) -> Result<Remote<dyn Fz>, Error> {
        Ok(other)
    }
    async fn back(&self, other: Remote<dyn Fz>) -> Result<i64, Error> {
        // A call to the client's object: never answered by the fuzzer.
        other.add(1, 2).await
    }
    async fn hang(&self, ms: u64) -> Result<(), Error> {
        tokio::time::sleep(Duration::from_millis(ms.min(50))).await;
        Ok(())
    }
    async fn fail(&self) -> Result<(), Error> {
        Err(Error::Io("fails on purpose".into()))
    }
}

/// The limits the server runs with: small, and timeouts short, so that a
/// stuck input ends well within [`BOUND`].
pub fn limits() -> Limits {
    Limits {
        max_frame_len: 256 << 10,
        max_calls_in_flight: 16,
        max_exports: 64,
        max_imports: 64,
        memory_budget: 1 << 20,
        handshake_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3),
        unauthenticated_idle_timeout: Duration::from_secs(3),
        pressure_stall_timeout: Duration::from_secs(1),
        write_stall_timeout: Duration::from_secs(2),
        default_deadline: Duration::from_secs(2),
        max_deadline: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// The process's runtime.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// A server on `addr` serving a fresh object per connection.
pub async fn serve(addr: &str) -> ServerHandle {
    Server::builder()
        .limits(limits())
        .bind(addr)
        .await
        .expect("bind")
        .serve(|_| fresh())
}

/// A version-1 hello listing `features`, no authentication.
pub fn hello(features: Vec<&str>) -> Vec<u8> {
    encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features,
        auth: None,
    })
}

/// Writes `input` to `stream` (then ends it) while reading what the server
/// sends, until the server ends its side: panics past [`BOUND`]. With
/// `REMOTE_FUZZ_VERBOSE` set, tells how many bytes came back.
pub async fn play<S: AsyncRead + AsyncWrite>(stream: S, input: &[u8]) {
    let (mut r, mut w) = tokio::io::split(stream);
    let write = async {
        // A reset (the server refused and closed) ends the writing early.
        let _ = w.write_all(input).await;
        let _ = w.shutdown().await;
    };
    let read = async {
        let mut sink = [0u8; 16 << 10];
        let mut got = 0;
        loop {
            match r.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        if std::env::var_os("REMOTE_FUZZ_VERBOSE").is_some() {
            eprintln!("{} bytes sent, {got} received", input.len());
        }
    };
    tokio::time::timeout(BOUND, async { tokio::join!(write, read) })
        .await
        .expect("the server closes the connection once the client's stream ends");
}

/// Waits until `server` holds nothing: no connection, export, budget byte,
/// or object made for a connection. Panics past [`BOUND`].
pub async fn settled(server: &ServerHandle) {
    let start = tokio::time::Instant::now();
    loop {
        let stats = server.stats();
        let live = LIVE.load(SeqCst);
        let used = server.buffered_bytes();
        if stats.connections_open == 0 && stats.calls.exports == 0 && used == 0 && live == 0 {
            if std::env::var_os("REMOTE_FUZZ_VERBOSE").is_some() {
                eprintln!("{:?}", stats.calls);
            }
            return;
        }
        assert!(
            start.elapsed() < BOUND,
            "the server still holds something after the connection: {} open, {} exports, \
             {used} budget bytes, {live} objects",
            stats.connections_open,
            stats.calls.exports
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
