//! The fuzz driver of a server's WebSocket input scan and meter
//! (`fuzz/fuzz_targets/ws_scan.rs`, through `remote_core::__fuzz`): the
//! peer's bytes in arbitrary reads through [`Metered`], what it hands on
//! parsed as tungstenite parses it (the upgrade request, then frames; a
//! binary message delivered, a violation refused), the connection opened
//! at an arbitrary point after the hello. Panics if the stream or meter
//! holds more than their bounds say, or if the budget is not all given
//! back once the stream is dropped.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::super::{Meter, READ_AHEAD, UPGRADE_MAX};
use super::Metered;
use crate::driver::io_types::{is_refusal, Fd, Socket, SMALL_FRAME};
use crate::driver::Budget;
use crate::transport::ws_scan::Scan;

/// A small deterministic generator from the input's first bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The peer's side: its bytes in reads of arbitrary sizes, then the end.
struct Peer<'a> {
    data: &'a [u8],
    rng: Rng,
}

impl AsyncRead for Peer<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let most = 1 + this.rng.below(3000) as usize;
        let n = most.min(buf.remaining()).min(this.data.len());
        buf.put_slice(&this.data[..n]);
        this.data = &this.data[n..];
        Poll::Ready(Ok(()))
    }
}

impl Socket for Peer<'_> {
    fn with_socket(&self, _: &mut dyn FnMut(Fd<'_>)) {}
}

/// What tungstenite makes of the bytes handed on (as far as the meter is
/// concerned).
struct Model {
    bytes: Vec<u8>,
    upgraded: bool,
    /// The message under way: its opcode and bytes so far.
    message: Option<(u8, usize)>,
    /// The first message was delivered.
    hello: bool,
    /// What the length prefix of the message under way says.
    said: Option<usize>,
    /// Messages delivered.
    delivered: usize,
}

/// How the model ended.
enum Stop {
    /// The stream was refused (a protocol violation, a text message).
    Refused,
    /// Closed, or the upgrade failed.
    Ended,
}

impl Model {
    /// Parses what was handed on, telling `meter` of each binary message
    /// delivered.
    fn parse(&mut self, meter: &Meter, max_message: usize) -> Result<(), Stop> {
        if !self.upgraded {
            let mut headers = [httparse::EMPTY_HEADER; 124];
            match httparse::Request::new(&mut headers).parse(&self.bytes) {
                Ok(httparse::Status::Complete(end)) => {
                    self.bytes.drain(..end);
                    self.upgraded = true;
                    meter.opened();
                }
                Ok(httparse::Status::Partial) => return Ok(()),
                Err(_) => return Err(Stop::Ended),
            }
        }
        loop {
            let b = &self.bytes;
            if b.len() < 2 {
                return Ok(());
            }
            let (ext, masked) = (b[1] & 0x7f, b[1] & 0x80 != 0);
            let at = match ext {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            let header = at + if masked { 4 } else { 0 };
            if b.len() < header {
                return Ok(());
            }
            let len = match ext {
                126 => u64::from(u16::from_be_bytes([b[2], b[3]])),
                127 => u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
                n => u64::from(n),
            };
            let (fin, rsv, opcode) = (b[0] & 0x80 != 0, b[0] & 0x70, b[0] & 0x0f);
            if rsv != 0 || !masked || !matches!(opcode, 0..=2 | 8..=10) {
                return Err(Stop::Refused);
            }
            if opcode >= 8 && (!fin || len > 125) {
                return Err(Stop::Refused);
            }
            let so_far = self.message.map_or(0, |(_, n)| n as u64);
            if opcode < 8 && so_far.saturating_add(len) > max_message as u64 {
                // Refused by tungstenite from its header.
                return Err(Stop::Refused);
            }
            let len = len as usize;
            if b.len() < header + len {
                return Ok(());
            }
            let mask: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
            let payload: Vec<u8> = b[header..header + len]
                .iter()
                .enumerate()
                .map(|(i, x)| x ^ mask[i % 4])
                .collect();
            self.bytes.drain(..header + len);
            match opcode {
                8 => return Err(Stop::Ended),
                9 | 10 => continue,
                _ => {}
            }
            let kind = match (opcode, self.message.take()) {
                (0, Some((kind, _))) => kind,
                (1 | 2, None) => opcode,
                _ => return Err(Stop::Refused),
            };
            let whole = so_far as usize + len;
            // The protocol's length prefix is in the message's first frame.
            if !fin {
                self.message = Some((kind, whole));
                if so_far == 0 {
                    self.prefix(&payload);
                }
                continue;
            }
            if so_far == 0 {
                self.prefix(&payload);
            }
            if kind == 1 {
                return Err(Stop::Refused);
            }
            if self.said.take() != Some(whole.wrapping_sub(4)) {
                // Not exactly one frame (`ws_read.rs`).
                return Err(Stop::Refused);
            }
            meter.delivered(whole);
            meter.drained();
            self.hello = true;
            self.delivered += 1;
        }
    }

    /// Notes the length prefix at the start of a message's first frame.
    fn prefix(&mut self, payload: &[u8]) {
        self.said = (payload.len() >= 4)
            .then(|| u32::from_be_bytes(payload[..4].try_into().expect("4 bytes")) as usize);
    }
}

/// Drives a server's WebSocket input with `data`, asserting its bounds.
pub(crate) fn ws_scan(data: &[u8]) {
    let Some((head, data)) = data.split_first_chunk::<8>() else {
        return;
    };
    let mut rng = Rng(u64::from_le_bytes(*head) | 1);
    let handshake = [64, 4096][rng.below(2) as usize];
    let max_frame = [1000, 70_000, 1 << 20][rng.below(3) as usize];
    let limit = [4096, 100_000, 1 << 20][rng.below(3) as usize];
    let max_message = max_frame + 4;
    let cap = handshake + 4 + 14;

    scan_alone(data, &mut rng);

    let budget = Arc::new(Budget::new(limit));
    let credit = Arc::new(AtomicUsize::new(0));
    let meter = Meter::new(handshake, max_message);
    let peer = Peer {
        data,
        rng: Rng(rng.next() | 1),
    };
    let mut m = Metered::new(peer, meter.clone());
    let mut model = Model {
        bytes: Vec::new(),
        upgraded: false,
        message: None,
        hello: false,
        said: None,
        delivered: 0,
    };
    let mut lifted = false;
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut buf = vec![0u8; 9000];
    // Bounded: every step reads a byte or stops.
    for _ in 0..data.len() + 64 {
        if !lifted && model.hello && rng.below(4) == 0 {
            meter.lift(&budget, &credit);
            lifted = true;
        }
        let want = 1 + rng.below(buf.len() as u64) as usize;
        let mut rb = ReadBuf::new(&mut buf[..want]);
        let r = Pin::new(&mut m).poll_read(&mut cx, &mut rb);
        check(&m, &meter, &budget, lifted, cap, limit);
        match r {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => break,
            Poll::Ready(Ok(())) => {
                model.bytes.extend_from_slice(rb.filled());
                match model.parse(&meter, max_message) {
                    Ok(()) => {}
                    Err(Stop::Refused) => {
                        meter.refuse();
                        break;
                    }
                    Err(Stop::Ended) => break,
                }
            }
            Poll::Ready(Err(e)) => {
                assert!(is_refusal(&e), "{e}");
                break;
            }
            Poll::Pending => {
                // Waiting for the opening or for room: the connection
                // opens if it can, else the input ends here.
                if !lifted && model.hello {
                    meter.lift(&budget, &credit);
                    lifted = true;
                } else {
                    break;
                }
            }
        }
        check(&m, &meter, &budget, lifted, cap, limit);
    }
    if std::env::var_os("REMOTE_FUZZ_VERBOSE").is_some() {
        eprintln!(
            "{} messages delivered, opened: {lifted}, refused: {}, budget used at the end: {}",
            model.delivered,
            meter.refused.load(Ordering::Acquire),
            budget.used()
        );
    }
    drop(m);
    drop(meter);
    assert_eq!(budget.used(), 0, "the budget is all given back");
}

/// The bounds the stream and meter keep to.
fn check(
    m: &Metered<Peer<'_>>,
    meter: &Meter,
    budget: &Budget,
    lifted: bool,
    cap: usize,
    limit: usize,
) {
    assert!(
        m.ahead.len() <= READ_AHEAD + 1,
        "read ahead: {}",
        m.ahead.len()
    );
    assert!(
        m.scan.request_len() <= UPGRADE_MAX + READ_AHEAD + 1,
        "request kept: {}",
        m.scan.request_len()
    );
    if meter.refused.load(Ordering::Acquire) {
        return;
    }
    if !lifted {
        assert!(
            meter.held() <= cap,
            "held before the opening: {} > {cap}",
            meter.held()
        );
        assert_eq!(budget.used(), 0);
    } else {
        let used = budget.used();
        assert!(
            used <= limit + SMALL_FRAME + cap,
            "budget used {used}, limit {limit}"
        );
    }
}

/// The scan alone, fed in arbitrary pieces, each header admitted or not
/// at random: it never hands on more than it was given, stops before a
/// header's last byte when it holds one, and reads each header whole.
fn scan_alone(data: &[u8], rng: &mut Rng) {
    let mut s = Scan::new();
    let mut at = 0;
    let mut stuck = 0;
    while at < data.len() && stuck < 4 {
        let end = (at + 1 + rng.below(64) as usize).min(data.len());
        let limit = rng.below((end - at) as u64 + 1) as usize;
        let admit = rng.next();
        let mut asked = 0u32;
        let fed = s.feed_up_to(&data[at..end], limit, |h| {
            assert!((2..=14).contains(&h.header), "{h:?}");
            asked += 1;
            admit >> (asked % 64) & 1 == 1
        });
        assert!(fed.used <= limit, "{fed:?} past {limit}");
        if fed.held.is_some() || fed.more {
            assert!(fed.used < limit, "held at its header's last byte: {fed:?}");
        }
        stuck = if fed.used == 0 { stuck + 1 } else { 0 };
        at += fed.used;
        assert!(s.request_len() <= at, "the request holds only what was fed");
    }
}
