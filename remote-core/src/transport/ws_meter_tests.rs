use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, ReadBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::driver::io_types::{Fd, Socket};

impl Socket for tokio::io::DuplexStream {
    fn with_socket(&self, _: &mut dyn FnMut(Fd<'_>)) {}
}

/// Reads from `m` until it waits, fails or ends: the bytes read and
/// how it stopped (`None`: it waits).
async fn read_until_it_stops<S: AsyncRead + Socket + Unpin>(
    m: &mut Metered<S>,
) -> (usize, Option<io::Result<()>>) {
    let mut total = 0;
    loop {
        let mut chunk = [0u8; 1000];
        let mut buf = ReadBuf::new(&mut chunk);
        let step = poll_fn(|cx| Poll::Ready(Pin::new(&mut *m).poll_read(cx, &mut buf))).await;
        match step {
            Poll::Pending => return (total, None),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return (total, Some(Ok(()))),
            Poll::Ready(Ok(())) => total += buf.filled().len(),
            Poll::Ready(Err(e)) => return (total, Some(Err(e))),
        }
    }
}

#[tokio::test]
async fn past_the_bound_a_read_fails_before_the_hello_and_waits_after_it_until_open() {
    let cap = 100 + 4 + WS_HEADER;
    // Before the hello: a message over the bound is refused.
    let (ours, mut theirs) = tokio::io::duplex(4096);
    theirs.write_all(&[0u8; 1000]).await.unwrap();
    let meter = Meter::new(100, 1 << 20);
    meter.opened();
    let mut m = Metered::new(ours, meter.clone());
    let (n, how) = read_until_it_stops(&mut m).await;
    assert_eq!(n, cap);
    let e = how.expect("refused, not waiting").unwrap_err();
    assert!(e.to_string().contains("max_handshake_frame_len"), "{e}");

    // After the hello (10 bytes delivered) and before the connection
    // is open: the read waits at the bound instead (a client may send
    // a large call right behind its hello).
    let (ours, mut theirs) = tokio::io::duplex(4096);
    theirs.write_all(&[0u8; 1000]).await.unwrap();
    let meter = Meter::new(100, 1 << 20);
    meter.opened();
    let mut m = Metered::new(ours, meter.clone());
    let mut hello = [0u8; 10];
    m.read_exact(&mut hello).await.unwrap();
    meter.delivered(10);
    let (n, how) = read_until_it_stops(&mut m).await;
    assert_eq!(n, cap, "read up to the bound past what was delivered");
    assert!(how.is_none(), "waits: {how:?}");
    // Open: the rest is read, and the waiting reader was woken.
    let reader = tokio::spawn(async move {
        let mut rest = vec![0u8; 1000 - 10 - cap];
        m.read_exact(&mut rest).await.map(|_| rest.len())
    });
    // Let it reach the bound and wait before the connection opens.
    tokio::task::yield_now().await;
    meter.lift(&Arc::new(Budget::new(1 << 20)), &Arc::default());
    let rest = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
        .await
        .expect("the lift wakes the waiting reader");
    assert_eq!(rest.unwrap().unwrap(), 1000 - 10 - cap);
}

/// The upgrade request the streams below start with.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

/// A masked frame header with `opcode` announcing `len` bytes (the mask
/// all zeros: the payload as is).
fn header(opcode: u8, len: u64) -> Vec<u8> {
    let mut w = vec![0x80 | opcode, 0x80 | 127];
    w.extend_from_slice(&len.to_be_bytes());
    w.extend_from_slice(&[0; 4]);
    w
}

/// [`header`] after the upgrade request.
fn request_and_header(opcode: u8, len: u64) -> Vec<u8> {
    [REQUEST, &header(opcode, len)].concat()
}

/// `io` metered as a server's stream whose messages may be
/// `max_message` bytes, read past its upgrade request ([`REQUEST`]).
async fn upgraded<S: AsyncRead + Socket + Unpin>(
    io: S,
    max_message: usize,
) -> (Arc<Meter>, Metered<S>) {
    let meter = Meter::new(100, max_message);
    let mut m = Metered::new(io, meter.clone());
    let mut request = [0u8; REQUEST.len()];
    m.read_exact(&mut request).await.unwrap();
    meter.opened();
    (meter, m)
}

#[tokio::test]
async fn once_open_a_frame_counts_its_length_before_it_is_handed_on() {
    let budget = Arc::new(Budget::new(2 << 20));
    let (ours, mut theirs) = tokio::io::duplex(2 << 20);
    // A frame announcing 1 MiB, of which 600 KB are sent.
    theirs
        .write_all(&request_and_header(2, 1 << 20))
        .await
        .unwrap();
    theirs.write_all(&vec![0u8; 600_000]).await.unwrap();
    let (meter, mut m) = upgraded(ours, 1 << 20).await;
    // Somebody else holds 1.5 MiB: no room for it.
    budget.charge(3 << 19);
    meter.lift(&budget, &Arc::default());
    let (n, how) = read_until_it_stops(&mut m).await;
    assert!(how.is_none(), "waits for room: {how:?}");
    assert_eq!(n, 13, "all of the header but its last byte");
    assert_eq!(budget.used(), 3 << 19, "nothing counted yet");
    // Room given back lets it on, its whole length counted at once.
    let reader = tokio::spawn(async move {
        let mut more = vec![0u8; 100 << 10];
        m.read_exact(&mut more).await.map(|_| m)
    });
    tokio::task::yield_now().await;
    budget.release(3 << 19);
    let m = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
        .await
        .expect("room given back wakes the read")
        .unwrap()
        .unwrap();
    assert_eq!(budget.used(), 1 << 20);
    // Gone with the connection: nothing stays counted.
    drop((m, meter));
    assert_eq!(budget.used(), 0);
}

#[tokio::test]
async fn frames_too_long_are_refused_from_their_headers() {
    for (opcode, len, lifted, why) in [
        (9, 126, true, "control frame of 126 bytes"),
        (2, 1000, false, "max_handshake_frame_len"),
        (2, (4 << 20) + (64 << 10) + 1, true, "memory_budget"),
    ] {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        theirs
            .write_all(&request_and_header(opcode, len))
            .await
            .unwrap();
        let (meter, mut m) = upgraded(ours, 8 << 20).await;
        if lifted {
            meter.lift(&Arc::new(Budget::new(4 << 20)), &Arc::default());
        }
        let (n, how) = read_until_it_stops(&mut m).await;
        assert_eq!(n, 13, "{why}: all of the header but its last byte");
        let e = how.expect("refused").unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
}

#[tokio::test]
async fn a_delivered_message_is_the_readers_credit_until_it_has_all_of_it() {
    let budget = Arc::new(Budget::new(1 << 20));
    let credit = Arc::new(AtomicUsize::new(0));
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    // Two messages of 100 KB each.
    let mut wire = request_and_header(2, 100_000);
    wire.extend_from_slice(&[0u8; 100_000]);
    wire.extend_from_slice(&header(2, 100_000));
    wire.extend_from_slice(&[0u8; 100_000]);
    theirs.write_all(&wire).await.unwrap();
    let (meter, mut m) = upgraded(ours, 1 << 20).await;
    meter.lift(&budget, &credit);
    let mut first = vec![0u8; 14 + 100_000];
    m.read_exact(&mut first).await.unwrap();
    assert_eq!(budget.used(), 100_000, "counted from its header");
    // Delivered: the reader's credit, still counted.
    meter.delivered(100_000);
    assert_eq!(
        (credit.load(Ordering::Acquire), budget.used()),
        (100_000, 100_000)
    );
    // The reader has all of it without taking it: given back.
    meter.drained();
    assert_eq!((credit.load(Ordering::Acquire), budget.used()), (0, 0));
    // The second: the reader's reservation takes it over (as
    // `Input::reserve` does), so nothing more is given back.
    let mut second = vec![0u8; 14 + 100_000];
    m.read_exact(&mut second).await.unwrap();
    meter.delivered(100_000);
    let taken = credit.swap(0, Ordering::AcqRel);
    assert_eq!(taken, 100_000);
    meter.drained();
    assert_eq!(budget.used(), 100_000, "the reader's now");
    budget.release(taken);
    drop((m, meter));
    assert_eq!(budget.used(), 0);
}

#[tokio::test]
async fn headers_do_not_count_against_the_bound_before_the_opening() {
    // A hello, then a proof as long as the bound allows, each with a
    // 14-byte header: the proof is read whole (its header and the hello's
    // counted as held, it waited for an opening that needed it: found by
    // a red-team pass).
    let (ours, mut theirs) = tokio::io::duplex(4096);
    let mut wire = request_and_header(2, 10);
    wire.extend_from_slice(&[0; 10]);
    wire.extend_from_slice(&header(2, 104));
    wire.extend_from_slice(&[0; 104]);
    theirs.write_all(&wire).await.unwrap();
    let (meter, mut m) = upgraded(ours, 1 << 20).await;
    let mut hello = [0u8; 24];
    m.read_exact(&mut hello).await.unwrap();
    meter.delivered(10);
    let (n, how) = read_until_it_stops(&mut m).await;
    assert_eq!(n, 14 + 104, "the whole proof");
    assert!(how.is_none(), "then waits: {how:?}");
}

/// A masked data frame (the mask all zeros) with `opcode`, `fin` and
/// `payload`.
fn data_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut w = header(opcode, payload.len() as u64);
    w[0] = u8::from(fin) << 7 | opcode;
    w.extend_from_slice(payload);
    w
}

/// A message in fragments counts whole (twice, as its length prefix
/// tells) on its first fragment, so the fragments after it are handed on
/// with the budget full; a prefix smaller than the first fragment is
/// refused from its header, nothing counted.
#[tokio::test]
async fn a_message_in_fragments_counts_whole_on_its_first_fragment() {
    // Unconstrained: tokio's cooperative budget would stop a long read.
    use tokio::task::unconstrained;
    const PART: usize = 100 << 10;
    const WHOLE: usize = 3 * PART;
    let budget = Arc::new(Budget::new(4 << 20));
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    let mut first = ((WHOLE - 4) as u32).to_be_bytes().to_vec();
    first.resize(PART, 7);
    theirs
        .write_all(&[REQUEST, &data_frame(2, false, &first)].concat())
        .await
        .unwrap();
    let (meter, mut m) = upgraded(ours, 1 << 20).await;
    meter.lift(&budget, &Arc::default());
    let (n, how) = unconstrained(read_until_it_stops(&mut m)).await;
    assert!(how.is_none(), "waits for the next fragment: {how:?}");
    assert_eq!(n, WS_HEADER + PART);
    assert_eq!(budget.used(), 2 * WHOLE, "the whole message, twice");
    // Somebody else takes all the rest: the fragments still come in.
    let others = budget.limit() - budget.used();
    budget.charge(others);
    let rest = [
        data_frame(0, false, &[7; PART]),
        data_frame(0, true, &[7; PART]),
    ]
    .concat();
    theirs.write_all(&rest).await.unwrap();
    let (n, how) = unconstrained(read_until_it_stops(&mut m)).await;
    assert!(how.is_none(), "{how:?}");
    assert_eq!(n, rest.len(), "handed on without more room");
    assert_eq!(budget.used(), budget.limit());
    budget.release(others);
    meter.delivered(WHOLE);
    meter.drained();
    assert_eq!(budget.used(), 0, "the message's count goes with it");

    // A prefix saying less than its first fragment holds.
    let mut lying = 10u32.to_be_bytes().to_vec();
    lying.resize(PART, 7);
    theirs
        .write_all(&data_frame(2, false, &lying))
        .await
        .unwrap();
    let (n, how) = unconstrained(read_until_it_stops(&mut m)).await;
    assert!(n < WS_HEADER, "the header held back: {n}");
    let e = how.expect("refused, not waiting").unwrap_err();
    assert!(crate::driver::io_types::is_refusal(&e), "{e}");
    assert!(
        e.to_string().contains("more than its length prefix says"),
        "{e}"
    );
    assert_eq!(budget.used(), 0);
    drop((m, meter));
    assert_eq!(budget.used(), 0);
}

/// A message in fragments keeps to its length prefix: a first frame too
/// short to hold it, a prefix over the message limit, and a continuation
/// past what the prefix said are refused from their header (counted as
/// they came, a frame of such a message waited for room its own message
/// held, and the wait exempted the message from its pace: a red-team
/// pass held a 16 MiB budget with 30 peers of 24 bytes each).
#[tokio::test]
async fn fragments_outside_their_length_prefix_are_refused_from_the_header() {
    async fn refusal_for(frames: &[Vec<u8>]) -> (String, usize) {
        let budget = Arc::new(Budget::new(4 << 20));
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        theirs
            .write_all(&[REQUEST.to_vec(), frames.concat()].concat())
            .await
            .unwrap();
        let (meter, mut m) = upgraded(ours, 64 << 10).await;
        meter.lift(&budget, &Arc::default());
        let (_, how) = tokio::task::unconstrained(read_until_it_stops(&mut m)).await;
        let e = how.expect("refused, not waiting").unwrap_err();
        assert!(crate::driver::io_types::is_refusal(&e), "{e}");
        (e.to_string(), budget.used())
    }
    let said = |len: u32, first: usize| {
        let mut p = (len - 4).to_be_bytes().to_vec();
        p.resize(first, 7);
        p
    };
    let (why, used) = refusal_for(&[data_frame(2, false, &[0, 0])]).await;
    assert!(
        why.contains("less than the protocol frame's 4-byte"),
        "{why}"
    );
    assert_eq!(used, 0);
    let (why, used) = refusal_for(&[data_frame(2, false, &said(1 << 20, 8))]).await;
    assert!(why.contains("limit exceeded: max_frame_len"), "{why}");
    assert_eq!(used, 0);
    // A message of 1,000 bytes, its first frame 100 of them, then 1,000.
    let frames = [
        data_frame(2, false, &said(1000, 100)),
        data_frame(0, true, &[7; 1000]),
    ];
    let (why, used) = refusal_for(&frames).await;
    assert!(why.contains("longer than its length prefix says"), "{why}");
    assert!(used <= 2 * 1000, "nothing past the prefix counted: {used}");
    // Within the prefix, the same message is handed on whole.
    let budget = Arc::new(Budget::new(4 << 20));
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    let whole = [
        REQUEST.to_vec(),
        data_frame(2, false, &said(1000, 100)),
        data_frame(0, true, &[7; 900]),
    ]
    .concat();
    theirs.write_all(&whole).await.unwrap();
    let (meter, mut m) = upgraded(ours, 64 << 10).await;
    meter.lift(&budget, &Arc::default());
    let (n, how) = tokio::task::unconstrained(read_until_it_stops(&mut m)).await;
    assert!(how.is_none(), "{how:?}");
    assert_eq!(n, whole.len() - REQUEST.len());
}

/// The reader's pace asks about a message held (`stall::gathered`) as
/// soon as it counts anything: what it counts, and the data read less the
/// headers of frames not held.
#[test]
fn a_message_held_is_paced() {
    let meter = Meter::new(4096, 1 << 20);
    meter.lift(&Arc::new(Budget::new(4 << 20)), &Arc::default());
    assert_eq!(meter.partial(), None, "nothing held");
    meter.announced.store(SMALL_FRAME + 1, Ordering::Release);
    meter.read.store(100, Ordering::Release);
    meter.unheld.store(30, Ordering::Release);
    assert_eq!(meter.partial(), Some((SMALL_FRAME + 1, 70)));
}
