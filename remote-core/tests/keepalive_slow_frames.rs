//! Keepalive and frames that take long to cross (red-team pass 46): a
//! frame still arriving proves its sender alive, and a side that the peer
//! cannot answer (it is sending us a frame, or we hold it back for room in
//! our budget) pings the peer so the peer's keepalive finds it alive. Each
//! of these honest clients lost its connection before: a well-behaved
//! client is slowed down, never disconnected.

#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use raw::{frame, hello, kind, tcp_addr, GOODBYE, RETURN};
use remote_core::proto::FEATURE_KEEPALIVE;
use remote_core::{
    remote, Connection, ConnectionBuilder, Error, Limits, Remote, Server, ServerHandle,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[remote]
pub trait Sizes {
    /// The length of `b`.
    async fn size(&self, b: Vec<u8>) -> Result<u64, Error>;
    /// `n` bytes.
    async fn blob(&self, n: u32) -> Result<Vec<u8>, Error>;
}

struct Impl;

#[remote]
impl Sizes for Impl {
    async fn size(&self, b: Vec<u8>) -> Result<u64, Error> {
        Ok(b.len() as u64)
    }
    async fn blob(&self, n: u32) -> Result<Vec<u8>, Error> {
        Ok(vec![0x5a; n as usize])
    }
}

/// Keepalive checks every 300 ms, a ping unanswered for 1 s loses the
/// peer: a frame of 128 KiB at 50 KB/s (2.6 s) takes many of them. (With
/// 300 ms, a side stalled that long on a loaded machine lost its peer.)
fn quick_keepalive() -> Limits {
    Limits {
        keepalive_interval: Some(Duration::from_millis(300)),
        keepalive_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

async fn serve(limits: Limits) -> ServerHandle {
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(std::sync::Arc::new(Impl) as std::sync::Arc<dyn Sizes>))
}

const LEN: usize = 128 << 10;

/// A TCP proxy to `to` that passes one direction at about `rate` bytes a
/// second (4 KiB at a time), client to server if `up`, the other as it
/// comes; returns its address.
async fn slow_proxy(to: String, rate: usize, up: bool) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let Ok((c, _)) = l.accept().await else { return };
        let s = TcpStream::connect(&to).await.unwrap();
        let (cr, cw) = c.into_split();
        let (sr, sw) = s.into_split();
        type R = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
        type W = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;
        let (mut slow_r, mut slow_w, mut fast_r, mut fast_w): (R, W, R, W) = if up {
            (Box::new(cr), Box::new(sw), Box::new(sr), Box::new(cw))
        } else {
            (Box::new(sr), Box::new(cw), Box::new(cr), Box::new(sw))
        };
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut fast_r, &mut fast_w).await;
        });
        let mut buf = vec![0u8; 4096];
        let pause = Duration::from_secs_f64(4096.0 / rate as f64);
        loop {
            match slow_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if slow_w.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    });
    addr
}

/// A server and the toolkit's client connected to it through a link that
/// passes 50 KB/s one way (client to server if `up`).
async fn through_slow_link(up: bool) -> (ServerHandle, Connection, Remote<dyn Sizes>) {
    let server = serve(quick_keepalive()).await;
    let proxy = slow_proxy(tcp_addr(&server), 50_000, up).await;
    let conn = ConnectionBuilder::new()
        .limits(quick_keepalive())
        .connect(&format!("tcp://{proxy}"))
        .await
        .unwrap();
    let root = conn.root();
    (server, conn, root)
}

/// A raw peer sending one call of 128 KiB steadily, 4 KiB at a time: the
/// server answers it (it said goodbye, "the peer did not answer a
/// keepalive ping", the call's bytes still coming), and pings the peer
/// meanwhile, which cannot answer inside its own frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_arriving_slowly_is_answered_and_its_sender_hears_pings() {
    let server = serve(quick_keepalive()).await;
    let mut st = TcpStream::connect(tcp_addr(&server)).await.unwrap();
    st.write_all(&hello(vec![FEATURE_KEEPALIVE])).await.unwrap();
    assert_eq!(kind(&frame(&mut st).await.unwrap()), 0);
    let (mut rd, mut wr) = st.into_split();
    let mut args = vec![0x91, 0xc6];
    args.extend((LEN as u32).to_be_bytes());
    args.extend(std::iter::repeat_n(0xab_u8, LEN));
    let call = raw::call(1, 0, "size", 60_000, &args);
    let writer = tokio::spawn(async move {
        for chunk in call.chunks(4096) {
            wr.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
        wr
    });
    let mut kinds = Vec::new();
    loop {
        let f = frame(&mut rd).await.expect("the connection stays open");
        kinds.push(kind(&f));
        assert_ne!(kind(&f), GOODBYE, "{kinds:?}");
        if kind(&f) == RETURN {
            break;
        }
    }
    let _wr = writer.await.unwrap();
    // Pings came while the frame did (2.6 s, checks every 300 ms).
    let pings = kinds.iter().filter(|&&k| k == raw::PING).count();
    assert!(pings >= 2, "{kinds:?}");
}

/// The toolkit's client on a slow uplink: its call of 128 KiB crosses
/// (the server's keepalive cut it off mid-frame, and the client, whose
/// ping waited behind its own frame, gave the server up too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_a_slow_uplink_keeps_its_connection() {
    let (_server, _conn, root) = through_slow_link(true).await;
    assert_eq!(root.size(vec![1; 10]).await.unwrap(), 10);
    assert_eq!(root.size(vec![1; LEN]).await.unwrap(), LEN as u64);
    assert_eq!(root.size(vec![1; 10]).await.unwrap(), 10);
}

/// The other way: a reply of 128 KiB over a slow downlink reaches the
/// client (it declared the server lost while the reply came).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_a_slow_downlink_keeps_its_connection() {
    let (_server, _conn, root) = through_slow_link(false).await;
    assert_eq!(root.blob(10).await.unwrap().len(), 10);
    assert_eq!(root.blob(LEN as u32).await.unwrap().len(), LEN);
    assert_eq!(root.blob(10).await.unwrap().len(), 10);
}

/// Peers of another address hold the server's budget (each announces a
/// 1 MiB frame and sends its rest slowly, fast enough for
/// `pressure_stall_timeout`): an honest client's large call waits for
/// room, the server not reading it meanwhile, and the client keeps its
/// connection (its keepalive declared the server lost, whose pings went
/// unread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_held_back_for_room_in_the_budget_keeps_its_connection() {
    let limits = Limits {
        memory_budget: 16 << 20,
        pressure_stall_timeout: Duration::from_secs(1),
        max_connections_per_peer: 64,
        ..quick_keepalive()
    };
    let server = serve(limits).await;
    let conn = ConnectionBuilder::new()
        .limits(quick_keepalive())
        .connect(&format!("tcp://{}", tcp_addr(&server)))
        .await
        .unwrap();
    let root: Remote<dyn Sizes> = conn.root();
    assert_eq!(root.size(vec![1; 10]).await.unwrap(), 10);
    let addr = tcp_addr(&server);
    let mut holders = Vec::new();
    for _ in 0..20 {
        let mut st = raw::silent_from(2, &addr).await;
        st.write_all(&((1u32 << 20) - 64).to_be_bytes())
            .await
            .unwrap();
        holders.push(st);
    }
    assert!(raw::eventually(|| server.buffered_bytes() > (15 << 20)).await);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let trickle = tokio::spawn(async move {
        let bytes = vec![0xc0; 9 << 10];
        loop {
            for st in &mut holders {
                let _ = st.write_all(&bytes).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = &mut stopped => return,
            }
        }
    });
    // Waits for room (about 2 s of holding, with checks every 300 ms),
    // then is answered or refused for its deadline; either way the
    // connection stays.
    let r = remote_core::with_timeout(Duration::from_secs(3), root.size(vec![1; 200_000])).await;
    assert!(
        !matches!(r, Err(Error::ConnectionLost(_))),
        "the honest client lost its connection: {r:?}"
    );
    drop(stop);
    trickle.await.unwrap();
    assert_eq!(root.size(vec![1; 10]).await.unwrap(), 10);
}
