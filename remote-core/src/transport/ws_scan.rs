//! Where the frame headers are in the bytes a server reads from a
//! WebSocket connection, so that `ws_meter.rs` can count each frame
//! before tungstenite sees its header: tungstenite reserves a frame's
//! whole announced length as soon as it parses the header, and keeps a
//! data frame's payload until its message is complete, where neither the
//! frame reader nor the memory budget sees it.
//!
//! The scan follows the stream from the first byte of the HTTP upgrade
//! request, which ends where tungstenite's parser says it does (httparse,
//! called as tungstenite calls it: a blank line of `\r\n` or `\n`, blank
//! lines before the request skipped; a red-team pass desynchronised a
//! scan that looked for `\r\n\r\n` with either, and every frame after
//! escaped it), and asks whether each frame with a payload may be handed
//! on *before* the last byte of its header: tungstenite cannot parse a
//! header it has not all of, so holding that byte back holds the frame.
//!
//! It also tells when tungstenite holds no byte it has not parsed
//! ([`Scan::rest`]), so that `ws.rs` can replace its buffers, which keep
//! the capacity of the largest frame read for the connection's life;
//! after a large data frame the scan stops at each frame's end
//! ([`Scan::stop_at_ends`]), so that such a moment comes.

/// The headers tungstenite parses a request into (its `MAX_HEADERS`): a
/// request with more is refused by it, and stays a request here.
const MAX_HEADERS: usize = 124;

/// A data frame larger than this grows tungstenite's read buffer (8 KiB,
/// `ws.rs`) well past its size: after one, the scan stops at frame ends.
pub(crate) const GROWS_OVER: u64 = 16 << 10;

/// Where the scan is in the stream.
#[derive(Debug)]
enum At {
    /// In the upgrade request: its bytes so far (bounded by the meter's
    /// bound on the upgrade, `ws_meter.rs`).
    Request(Vec<u8>),
    /// In a frame header: its bytes so far.
    Header { bytes: [u8; 14], have: usize },
    /// In a frame's payload: the bytes left, and the frame.
    Payload { left: u64, frame: Head },
}

/// What a frame's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// Its payload's length.
    pub(crate) len: u64,
    /// 0 continues a fragmented message, 1 and 2 start one (text,
    /// binary); 8 and more are control frames.
    pub(crate) opcode: u8,
    /// Whether it ends its message.
    pub(crate) fin: bool,
    /// The header's own length (2 to 14 bytes).
    pub(crate) header: usize,
    /// For the first frame of a message in fragments, the whole message's
    /// length as its first four payload bytes (the protocol frame's length
    /// prefix, unmasked) tell it, plus those four: the meter reserves the
    /// whole message on its first fragment (`ws_meter.rs`).
    pub(crate) message: Option<u64>,
}

impl Head {
    /// Whether it is a control frame (ping, pong, close).
    pub(crate) fn is_control(&self) -> bool {
        self.opcode >= 8
    }

    /// Whether it is part of a message in several frames.
    pub(crate) fn is_fragment(&self) -> bool {
        !self.is_control() && (self.opcode == 0 || !self.fin)
    }

    /// Whether it starts a message in several frames, with a payload of
    /// at least the protocol's length prefix: the scan reads that prefix
    /// before it asks for the frame.
    fn opens_fragments(&self) -> bool {
        matches!(self.opcode, 1 | 2) && !self.fin && self.len >= PREFIX as u64
    }
}

/// How far [`Scan::feed`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Bytes that may be handed on.
    pub(crate) used: usize,
    /// The frame whose header's last byte is the next one, if it was not
    /// admitted.
    pub(crate) held: Option<Head>,
    /// Whether the next byte is a header's last and the scan needs more
    /// bytes past it before it can ask for its frame (the first four
    /// payload bytes of a first fragment, [`Head::message`]).
    pub(crate) more: bool,
}

/// The position in a server's WebSocket input.
#[derive(Debug)]
pub(crate) struct Scan {
    at: At,
    /// Frames that end in an event tungstenite reports (a message ended,
    /// a control frame), all handed on.
    events: u64,
    /// Whether a message in several frames is under way.
    fragment: bool,
    /// Whether [`Scan::feed`] returns at the end of each frame outside a
    /// message in fragments (set after a data frame over [`GROWS_OVER`];
    /// the caller clears it). Inside one, tungstenite holds the message
    /// anyway: stopping there would only cost reads (a red-team pass kept
    /// a connection so with a flood of pongs: 1.3× the time per pong).
    pub(crate) stop_at_ends: bool,
}

impl Scan {
    /// A scan from the first byte of the upgrade request.
    pub(crate) fn new() -> Self {
        Scan {
            at: At::Request(Vec::new()),
            events: 0,
            fragment: false,
            stop_at_ends: false,
        }
    }

    /// If every byte fed ends a whole frame and no message is under way,
    /// the number of events those frames make: once tungstenite has
    /// reported that many, it holds no byte it has not parsed.
    pub(crate) fn rest(&self) -> Option<u64> {
        match self.at {
            At::Header { have: 0, .. } if !self.fragment => Some(self.events),
            _ => None,
        }
    }

    /// The bytes of the upgrade request kept so far (the fuzz target's
    /// bound check).
    pub(crate) fn request_len(&self) -> usize {
        match &self.at {
            At::Request(r) => r.len(),
            _ => 0,
        }
    }

    /// `frame` was fed whole: whether the feed stops here.
    fn ended(&mut self, frame: Head) -> bool {
        if frame.is_control() {
            self.events += 1;
        } else {
            self.fragment = !frame.fin;
            self.events += u64::from(frame.fin);
        }
        self.at = header();
        self.stop_at_ends && !self.fragment
    }

    /// The most bytes the next read should take: what is left of the
    /// payload under way and `ahead` more (so bytes read past a header
    /// that is held back are at most `ahead`).
    pub(crate) fn read_limit(&self, ahead: usize) -> usize {
        match &self.at {
            At::Payload { left, .. } => usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .saturating_add(ahead),
            _ => ahead,
        }
    }

    /// Goes through `bytes`, the next ones of the stream. Before the last
    /// byte of each frame header, asks `admit`; if it says no, stops
    /// there: that byte and the rest are not used. With
    /// [`stop_at_ends`](Self::stop_at_ends), also stops after the first
    /// frame that ends.
    #[cfg(test)]
    pub(crate) fn feed(&mut self, bytes: &[u8], admit: impl FnMut(Head) -> bool) -> Fed {
        self.feed_up_to(bytes, bytes.len(), admit)
    }

    /// [`feed`](Self::feed) of the first `limit` of `bytes` only (what the
    /// caller can hand on), the rest looked at for a first fragment's
    /// length prefix ([`Fed::more`] if it is not there either).
    pub(crate) fn feed_up_to(
        &mut self,
        bytes: &[u8],
        limit: usize,
        mut admit: impl FnMut(Head) -> bool,
    ) -> Fed {
        let mut used = 0;
        let limit = limit.min(bytes.len());
        while used < limit {
            let rest = &bytes[used..limit];
            match &mut self.at {
                At::Request(request) => {
                    let before = request.len();
                    request.extend_from_slice(rest);
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::Request::new(&mut headers).parse(request) {
                        Ok(httparse::Status::Complete(end)) => {
                            used += end.saturating_sub(before).min(rest.len());
                            self.at = header();
                        }
                        // Partial; or refused, as tungstenite refuses it.
                        _ => used += rest.len(),
                    }
                }
                At::Header { bytes: head, have } => {
                    // The first two bytes tell the header's length.
                    let target = if *have < 2 {
                        2
                    } else {
                        header_len(&head[..*have])
                    };
                    let n = (target - *have).min(rest.len());
                    let mut next = *head;
                    next[*have..*have + n].copy_from_slice(&rest[..n]);
                    let complete = *have + n == target && header_len(&next[..target]) == target;
                    if complete {
                        let mut frame = parse(&next[..target]);
                        let payload = &bytes[used + n..];
                        let more = frame.opens_fragments() && payload.len() < PREFIX;
                        if frame.opens_fragments() && !more {
                            frame.message = Some(prefixed(&next[..target], payload));
                        }
                        if more || !admit(frame) {
                            // Held before its last byte.
                            *head = next;
                            *have += n - 1;
                            used += n - 1;
                            return Fed {
                                used,
                                held: (!more).then_some(frame),
                                more,
                            };
                        }
                        used += n;
                        if !frame.is_control() && frame.len > GROWS_OVER {
                            self.stop_at_ends = true;
                        }
                        if frame.len > 0 {
                            self.at = At::Payload {
                                left: frame.len,
                                frame,
                            };
                            continue;
                        }
                        if self.ended(frame) {
                            break;
                        }
                    } else {
                        *head = next;
                        *have += n;
                        used += n;
                    }
                }
                At::Payload { left, frame } => {
                    let n = (*left).min(rest.len() as u64);
                    *left -= n;
                    used += n as usize;
                    if *left == 0 {
                        let frame = *frame;
                        if self.ended(frame) {
                            break;
                        }
                    }
                }
            }
        }
        Fed {
            used,
            held: None,
            more: false,
        }
    }
}

/// The protocol's length prefix, at the start of a message.
const PREFIX: usize = 4;

/// A message's whole length as the unmasked length prefix at the start of
/// its first frame's `payload` says (plus the prefix), `head` that frame's
/// header.
fn prefixed(head: &[u8], payload: &[u8]) -> u64 {
    let mask = if head[1] & 0x80 != 0 {
        head[head.len() - 4..].try_into().expect("4 bytes")
    } else {
        [0; 4]
    };
    let mut prefix = [0u8; PREFIX];
    for (i, b) in prefix.iter_mut().enumerate() {
        *b = payload[i] ^ mask[i];
    }
    u64::from(u32::from_be_bytes(prefix)) + PREFIX as u64
}

fn header() -> At {
    At::Header {
        bytes: [0; 14],
        have: 0,
    }
}

/// A frame header's length, from its first two bytes or more.
fn header_len(head: &[u8]) -> usize {
    let second = head[1];
    let ext = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// What a whole header says.
fn parse(head: &[u8]) -> Head {
    let len = match head[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        127 => u64::from_be_bytes(head[2..10].try_into().expect("8 bytes")),
        n => u64::from(n),
    };
    Head {
        len,
        opcode: head[0] & 0x0f,
        fin: head[0] & 0x80 != 0,
        header: head.len(),
        message: None,
    }
}

#[cfg(test)]
#[path = "ws_scan_tests.rs"]
mod tests;
