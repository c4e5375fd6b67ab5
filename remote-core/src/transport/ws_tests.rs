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
        io.pending.len() <= 1024 + WRITE_TAKE,
        "{} pending",
        io.pending.len()
    );
}

#[tokio::test]
async fn a_large_frame_is_taken_whole_across_writes() {
    // A frame larger than `WRITE_TAKE` goes out in one message: the first
    // write takes part of it, the next the rest of it (and no more than
    // `WRITE_TAKE` beyond).
    let limits = Limits::default();
    let (ours, mut theirs) = tokio::io::duplex(4 << 20);
    let ws = WebSocketStream::from_raw_socket(ours, Role::Server, Some(config(&limits))).await;
    let mut io = WsIo::open(ws);
    let big = frames(2, 300 << 10);
    let first = poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &big))
        .await
        .unwrap();
    assert_eq!(first, WRITE_TAKE, "the first write takes the bound");
    let second = poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &big[first..]))
        .await
        .unwrap();
    assert_eq!(
        first + second,
        4 + (300 << 10) + WRITE_TAKE,
        "the rest of the frame, and the bound"
    );
    poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
        .await
        .unwrap();
    // The rest of the second frame goes too, and the large frames'
    // buffer is not kept for the connection's life.
    let third = poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &big[first + second..]))
        .await
        .unwrap();
    assert_eq!(first + second + third, big.len());
    // A small frame after them (the large buffer, once free, would be
    // taken back for it).
    poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
        .await
        .unwrap();
    let small = frames(1, 10);
    let n = poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &small))
        .await
        .unwrap();
    assert_eq!(n, small.len());
    poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
        .await
        .unwrap();
    assert!(io.pending.is_empty());
    assert!(
        io.pending.capacity() <= WRITE_TAKE,
        "{} bytes kept after a large frame",
        io.pending.capacity()
    );
    // The peer gets the first frame as one binary message.
    let mut client = WebSocketStream::from_raw_socket(&mut theirs, Role::Client, None).await;
    use futures_util::StreamExt;
    let msg = client.next().await.unwrap().unwrap();
    assert_eq!(msg.into_data().len(), 4 + (300 << 10));
}
