use std::future::poll_fn;

use tokio_tungstenite::tungstenite::protocol::Role;

use super::*;

/// `n` protocol frames of `len` payload bytes each, back to back.
fn frames(n: usize, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(n * (4 + len));
    for _ in 0..n {
        b.extend_from_slice(&(len as u32).to_be_bytes());
        b.resize(b.len() + len, 7);
    }
    b
}

/// Writes `buf` until the stream stops taking bytes (its peer reads
/// nothing); returns how many it took.
async fn taken_before_it_waits(io: &mut WsIo<tokio::io::DuplexStream>, buf: &[u8]) -> usize {
    let mut at = 0;
    while at < buf.len() {
        let step = poll_fn(|cx| Poll::Ready(Pin::new(&mut *io).poll_write(cx, &buf[at..]))).await;
        match step {
            Poll::Ready(Ok(n)) => at += n,
            Poll::Ready(Err(e)) => panic!("write failed: {e}"),
            Poll::Pending => break,
        }
    }
    at
}

#[tokio::test]
async fn a_write_takes_little_more_than_the_frame_under_way() {
    // A red-team pass: every byte handed over was taken at once and
    // counted as written, so a peer reading just enough for
    // `write_stall_timeout` had whole batches held outside the budget.
    let limits = Limits::default();
    let (ours, _theirs) = tokio::io::duplex(64 << 10);
    let ws = WebSocketStream::from_raw_socket(ours, Role::Server, Some(config(&limits))).await;
    let mut io = WsIo::open(ws);
    // 4 MiB of 1 KiB frames to a peer that reads nothing: the stream takes
    // what the pipe and tungstenite's bounded buffer hold, and a write's
    // `WRITE_TAKE` more, then waits.
    let small = frames(4096, 1020);
    let took = taken_before_it_waits(&mut io, &small).await;
    let bound = config(&limits).max_write_buffer_size + (64 << 10) + 2 * WRITE_TAKE;
    assert!(
        took <= bound,
        "took {took} of {} bytes (bound {bound})",
        small.len()
    );
    assert!(took >= 64 << 10, "took {took}: it still writes");
    assert!(
        io.pending.len() <= PENDING_MAX,
        "{} pending",
        io.pending.len()
    );
}

#[tokio::test]
async fn a_large_frame_goes_in_fragments_as_it_is_written() {
    // A frame larger than `WRITE_TAKE` is sent as a message in fragments
    // of `WRITE_TAKE` bytes as they are written: no write takes more than
    // `PENDING_MAX`, and neither `pending` nor tungstenite's write buffer
    // ever gathers the whole frame (tungstenite's kept the capacity of the
    // largest message for the connection's life: a red-team pass).
    let limits = Limits::default();
    let (ours, mut theirs) = tokio::io::duplex(4 << 20);
    let ws = WebSocketStream::from_raw_socket(ours, Role::Server, Some(config(&limits))).await;
    let mut io = WsIo::open(ws);
    let mut big = frames(2, 300 << 10);
    big[4] = 1; // the payloads differ from one another
    big[4 + (300 << 10) + 4] = 2;
    let mut at = 0;
    while at < big.len() {
        let n = poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &big[at..]))
            .await
            .unwrap();
        assert!(n > 0 && n <= PENDING_MAX, "took {n}");
        assert!(
            io.pending.len() < WRITE_TAKE,
            "{} pending",
            io.pending.len()
        );
        at += n;
    }
    poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
        .await
        .unwrap();
    // A small frame after them: sent whole.
    let small = frames(1, 10);
    let n = poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &small))
        .await
        .unwrap();
    assert_eq!(n, small.len());
    poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
        .await
        .unwrap();
    assert!(io.pending.is_empty());
    assert_eq!(
        io.pending.capacity(),
        0,
        "the buffer of the large frames is not kept"
    );
    // On the wire: fragments of at most `WRITE_TAKE` bytes...
    let mut wire = vec![0u8; big.len() + small.len() + 1024];
    let mut got = 0;
    let need = big.len() + small.len();
    while got < need {
        use tokio::io::AsyncReadExt;
        got += theirs.read(&mut wire[got..]).await.unwrap();
    }
    let mut sizes = Vec::new();
    let mut i = 0;
    while i < got {
        let (fin, op) = (wire[i] & 0x80 != 0, wire[i] & 0x0f);
        let (len, head) = match wire[i + 1] & 0x7f {
            126 => (u16::from_be_bytes([wire[i + 2], wire[i + 3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(wire[i + 2..i + 10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        sizes.push((op, fin, len));
        i += head + len;
    }
    let mut want = Vec::new();
    for _ in 0..2 {
        let mut left = 4 + (300 << 10);
        want.push((2, false, WRITE_TAKE));
        left -= WRITE_TAKE;
        while left > 0 {
            let n = left.min(WRITE_TAKE);
            left -= n;
            want.push((0, left == 0, n));
        }
    }
    want.push((2, true, small.len()));
    assert_eq!(sizes, want);
    // ...which a WebSocket client reads as one message per frame.
    let (mut replay, read) = tokio::io::duplex(got + 1024);
    tokio::io::AsyncWriteExt::write_all(&mut replay, &wire[..got])
        .await
        .unwrap();
    let mut client = WebSocketStream::from_raw_socket(read, Role::Client, None).await;
    use futures_util::StreamExt;
    for expected in [&big[..4 + (300 << 10)], &big[4 + (300 << 10)..], &small[..]] {
        let msg = client.next().await.unwrap().unwrap();
        assert_eq!(&msg.into_data()[..], expected);
    }
}
