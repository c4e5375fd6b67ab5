//! A hand-played peer for the hostile-peer tests: connect a raw socket,
//! say hello, write frames, and read the replies and goodbyes back, each
//! read bounded by [`WAIT`] so a missing frame fails the test instead of
//! hanging it. Included by `#[path = "support/raw.rs"] mod raw;`.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use remote_core::proto::{encode, CallId, Hello, ObjectId, Reader};
use remote_core::ServerHandle;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
    ReadHalf, WriteHalf,
};
use tokio::net::TcpStream;

/// How long any one expected frame may take on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// Message kind codes (PROTOCOL.md §3).
pub const HELLO: u64 = 0;
pub const CALL: u64 = 1;
pub const RETURN: u64 = 2;
pub const ERROR: u64 = 3;
pub const RELEASE: u64 = 4;
pub const CANCEL: u64 = 5;
pub const GOODBYE: u64 = 6;
pub const PING: u64 = 7;
pub const PONG: u64 = 8;

/// A version-1 hello frame listing `features`, with no authentication.
pub fn hello(features: Vec<&str>) -> Vec<u8> {
    encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features,
        auth: None,
    })
}

/// A call frame: `method` on object `target` as call `id`, with
/// `timeout_ms` and the raw msgpack bytes `args` (normally an array).
pub fn call(id: u32, target: u32, method: &str, timeout_ms: u32, args: &[u8]) -> Vec<u8> {
    let mut f = encode::begin(32 + args.len());
    encode::call_head(&mut f, CallId(id), ObjectId(target), method, timeout_ms);
    f.extend_from_slice(args);
    encode::finish(&mut f);
    f
}

/// The `host:port` of a TCP server.
pub fn tcp_addr(server: &ServerHandle) -> String {
    let addr = server.local_addr();
    addr.strip_prefix("tcp://").unwrap_or(addr).to_owned()
}

/// A raw socket to a `ws://` server, upgraded to WebSocket (the response
/// headers read), nothing else sent: the caller writes WebSocket frames.
pub async fn ws_upgraded(server: &ServerHandle) -> BufReader<TcpStream> {
    let addr = server.local_addr();
    let authority = addr
        .strip_prefix("ws://")
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    ws_upgrade(TcpStream::connect(&authority).await.unwrap(), &authority).await
}

/// Upgrades `s` (a raw stream to a WebSocket server whose path is `/`)
/// to WebSocket: the request sent, the response's head read.
pub async fn ws_upgrade<S: AsyncRead + AsyncWrite + Unpin>(s: S, host: &str) -> BufReader<S> {
    let mut r = BufReader::new(s);
    let upgrade = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    r.get_mut().write_all(upgrade.as_bytes()).await.unwrap();
    ws_response(&mut r).await;
    r
}

/// Reads the head of an upgrade response, up to its blank line.
pub async fn ws_response<S: AsyncRead + Unpin>(r: &mut BufReader<S>) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = bounded(r.read_line(&mut line)).await.unwrap();
        assert!(n > 0, "the server closed during the upgrade");
        if line == "\r\n" {
            return;
        }
    }
}

/// A masked (key 0: the payload as is) binary WebSocket frame from a
/// client, carrying `payload`.
pub fn ws_binary(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x82];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A masked (key 0) client WebSocket frame of a message in fragments: its
/// first (binary) or a continuation, the last if `fin`.
pub fn ws_fragment(first: bool, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = ws_binary(payload);
    f[0] = (u8::from(fin) << 7) | (u8::from(first) * 2);
    f
}

/// A raw socket to a `ws://` server whose connection is open: upgraded,
/// hellos exchanged and a call (`len` on the root) answered, so that what
/// is sent next counts in the memory budget, not under the handshake's
/// bound.
pub async fn ws_opened(server: &ServerHandle) -> BufReader<TcpStream> {
    let mut s = ws_upgraded(server).await;
    s.get_mut()
        .write_all(&ws_binary(&hello(vec![])))
        .await
        .unwrap();
    let (_, theirs) = ws_frame(&mut s).await.expect("the server's hello");
    assert_eq!(kind(&theirs[4..]), HELLO);
    let len = ws_binary(&call(1, 0, "len", 60_000, &[0x90]));
    s.get_mut().write_all(&len).await.unwrap();
    let (_, reply) = ws_frame(&mut s).await.expect("the reply");
    assert_eq!(kind(&reply[4..]), RETURN);
    s
}

/// `n` masked client pings of 125 bytes each (a pong echoes its ping's
/// payload), back to back.
pub fn ws_pings(n: usize) -> Vec<u8> {
    let mut ping = vec![0x89u8, 0x80 | 125, 0, 0, 0, 0];
    ping.extend(std::iter::repeat_n(b'p', 125));
    ping.iter().copied().cycle().take(ping.len() * n).collect()
}

/// Reads one unmasked server-to-client WebSocket message: (opcode,
/// payload). A message in fragments (the server sends a frame over 64 KiB
/// so) is put together; a control frame between its fragments is passed
/// over.
pub async fn ws_frame(s: &mut (impl AsyncRead + Unpin)) -> Option<(u8, Vec<u8>)> {
    let (fin, op, mut data) = ws_one_frame(s).await?;
    if fin || op >= 8 {
        return Some((op, data));
    }
    loop {
        let (fin, next, more) = ws_one_frame(s).await?;
        if next >= 8 {
            continue;
        }
        assert_eq!(next, 0, "a continuation frame");
        data.extend_from_slice(&more);
        if fin {
            return Some((op, data));
        }
    }
}

/// Reads one unmasked server-to-client WebSocket frame: (fin, opcode,
/// payload).
async fn ws_one_frame(s: &mut (impl AsyncRead + Unpin)) -> Option<(bool, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.ok()?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).await.ok()?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).await.ok()?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).ok()?];
    s.read_exact(&mut payload).await.ok()?;
    Some((h[0] & 0x80 != 0, h[0] & 0x0f, payload))
}

/// A raw socket to `server`, nothing sent yet.
pub async fn connect(server: &ServerHandle) -> TcpStream {
    TcpStream::connect(tcp_addr(server)).await.unwrap()
}

/// A raw socket to `server` that sent a hello listing `features` (the
/// server's hello is left unread).
pub async fn raw_with(server: &ServerHandle, features: Vec<&str>) -> TcpStream {
    let mut s = connect(server).await;
    s.write_all(&hello(features)).await.unwrap();
    s
}

/// A raw socket to `server` that sent a plain hello.
pub async fn raw(server: &ServerHandle) -> TcpStream {
    raw_with(server, vec![]).await
}

/// A raw socket from 127.0.0.`host` to the TCP server at `server`
/// (`host:port`) with a 4 KiB receive buffer, after the handshake: once
/// it stops reading, the server's writes to it stall soon.
pub async fn silent_from(host: u8, server: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind(format!("127.0.0.{host}:0").parse().unwrap())
        .unwrap();
    let mut s = sock.connect(server.parse().unwrap()).await.unwrap();
    s.write_all(&hello(vec![])).await.unwrap();
    assert_eq!(kind(&frame(&mut s).await.unwrap()), HELLO);
    s
}

/// Subscribes `n` listeners, our objects 1 to `n`, to the shared
/// collection that is the server's root object, checking each reply.
pub async fn subscribe_listeners(s: &mut TcpStream, n: u32) {
    for k in 1..=n {
        // `subscribe(listener)`, the listener our object k.
        let mut args = vec![0x91, 0xd6, 0x01];
        args.extend_from_slice(&k.to_be_bytes());
        s.write_all(&call(k, 0, "subscribe", 60_000, &args))
            .await
            .unwrap();
        let f = frame(s).await.unwrap();
        assert_eq!(kind(&f), RETURN, "{:?}", error_of(&f));
    }
}

/// A raw socket that completed the handshake: sent a plain hello and read
/// the server's (checked to be a hello).
pub async fn opened(server: &ServerHandle) -> TcpStream {
    let mut s = raw(server).await;
    let f = frame(&mut s).await.expect("the server's hello");
    assert_eq!(kind(&f), HELLO, "hello first");
    s
}

/// The next frame's payload, or `None` at the end of the stream. Panics if
/// nothing arrives within [`WAIT`].
pub async fn frame<R: AsyncRead + Unpin>(s: &mut R) -> Option<Vec<u8>> {
    let read = async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut f).await.ok()?;
        Some(f)
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the peer sent nothing for 60 s")
}

/// The message kind of a payload.
pub fn kind(f: &[u8]) -> u64 {
    let mut r = Reader::new(f);
    r.array_len().unwrap();
    r.uint().unwrap()
}

/// The field after a message's kind: a call's id, or the id of the call a
/// reply answers.
pub fn id_of(f: &[u8]) -> u64 {
    let mut r = Reader::new(f);
    r.array_len().unwrap();
    r.uint().unwrap();
    r.uint().unwrap()
}

/// Reads frames until one of `kind`; returns it. Panics at the end of the
/// stream.
pub async fn next_of_kind<R: AsyncRead + Unpin>(s: &mut R, want: u64) -> Vec<u8> {
    loop {
        let f = frame(s).await.expect("connection closed");
        if kind(&f) == want {
            return f;
        }
    }
}

/// An error message's `(call id, kind, message)`, if `f` is one.
pub fn error_of(f: &[u8]) -> Option<(u64, String, String)> {
    let mut r = Reader::new(f);
    if r.array_len().ok()? != 3 || r.uint().ok()? != ERROR {
        return None;
    }
    let id = r.uint().unwrap();
    r.array_len().unwrap();
    let kind = r.str().unwrap().to_owned();
    r.str().unwrap(); // type
    Some((id, kind, r.str().unwrap().to_owned()))
}

/// Reads frames until an error message: `(call id, kind, message)`.
pub async fn next_error<R: AsyncRead + Unpin>(s: &mut R) -> (u64, String, String) {
    loop {
        let f = frame(s).await.expect("connection closed before an error");
        if let Some(e) = error_of(&f) {
            return e;
        }
    }
}

/// Sends call `id` of `method` on the root with `args`, and expects it
/// refused with `kind`, the message naming `needle`.
pub async fn refused<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    id: u64,
    method: &str,
    args: &[u8],
    kind: &str,
    needle: &str,
) {
    s.write_all(&call(id as u32, 0, method, 600_000, args))
        .await
        .unwrap();
    let (got, k, message) = next_error(s).await;
    assert_eq!((got, k.as_str()), (id, kind), "{method}: {message}");
    assert!(message.contains(needle), "{method}: {message}");
}

/// Sends call `id` of `method` on the root with `args`, and expects it
/// answered: the return frame.
pub async fn answered<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    id: u64,
    method: &str,
    args: &[u8],
) -> Vec<u8> {
    s.write_all(&call(id as u32, 0, method, 600_000, args))
        .await
        .unwrap();
    let r = frame(s).await.unwrap();
    assert_eq!(kind(&r), RETURN, "{method}: {:?}", error_of(&r));
    r
}

/// Reads WebSocket messages until one carries a goodbye (its reason) or
/// the stream closes (`None`).
pub async fn ws_goodbye<R: AsyncRead + Unpin>(s: &mut R) -> Option<String> {
    while let Some((op, payload)) = ws_frame(s).await {
        if op == 8 {
            return None;
        }
        if op == 2 && payload.len() > 4 && kind(&payload[4..]) == GOODBYE {
            let mut r = Reader::new(&payload[6..]);
            return Some(r.str().unwrap().to_owned());
        }
    }
    None
}

/// Reads until a goodbye (its reason) or the end of the stream (`None`).
pub async fn goodbye<R: AsyncRead + Unpin>(s: &mut R) -> Option<String> {
    while let Some(f) = frame(s).await {
        if kind(&f) == GOODBYE {
            let mut r = Reader::new(&f[2..]);
            return Some(r.str().unwrap().to_owned());
        }
    }
    None
}

/// Reads until the end of the stream, failing on any goodbye.
pub async fn eof_without_goodbye<R: AsyncRead + Unpin>(s: &mut R) {
    if let Some(reason) = goodbye(s).await {
        panic!("unexpected goodbye: {reason}");
    }
}

/// `f`'s output, or a panic if it takes longer than [`WAIT`].
pub async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("within 60 s")
}

/// Polls `cond` every few milliseconds until it holds or [`WAIT`] passes;
/// whether it held.
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// A 4 KiB in-memory pipe whose far end has sent its hello and then reads
/// nothing: `r` and `w` for our connection, `their_w` to send it more
/// frames. Keep `their_r` and `their_w` alive (bind them to named
/// variables): dropping either would end the pipe, not stall it.
pub struct NeverReads {
    pub r: ReadHalf<DuplexStream>,
    pub w: WriteHalf<DuplexStream>,
    pub their_r: ReadHalf<DuplexStream>,
    pub their_w: WriteHalf<DuplexStream>,
}

/// See [`NeverReads`].
pub async fn never_reads() -> NeverReads {
    let (ours, theirs) = tokio::io::duplex(4096);
    let (r, w) = tokio::io::split(ours);
    let (their_r, mut their_w) = tokio::io::split(theirs);
    their_w.write_all(&hello(vec![])).await.unwrap();
    NeverReads {
        r,
        w,
        their_r,
        their_w,
    }
}
