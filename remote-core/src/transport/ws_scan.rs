//! Where the frame headers are in the bytes a server reads from a
//! WebSocket connection, so that `ws_meter.rs` can count each frame
//! before tungstenite sees its header: tungstenite reserves a frame's
//! whole announced length as soon as it parses the header, and keeps a
//! data frame's payload until its message is complete, where neither the
//! frame reader nor the memory budget sees it.
//!
//! The scan follows the stream from the first byte of the HTTP upgrade
//! request (which ends at its first blank line: an upgrade has no body),
//! and asks whether each frame with a payload may be handed on *before*
//! the last byte of its header: tungstenite cannot parse a header it has
//! not all of, so holding that byte back holds the frame.

/// The end of the HTTP upgrade request.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// Where the scan is in the stream.
#[derive(Debug, Clone, Copy)]
enum At {
    /// In the upgrade request: how many bytes of [`HEAD_END`] matched.
    Request(usize),
    /// In a frame header: its bytes so far.
    Header { bytes: [u8; 14], have: usize },
    /// In a frame's payload: the bytes left.
    Payload { left: u64 },
}

/// How far [`Scan::feed`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Bytes that may be handed on.
    pub(crate) used: usize,
    /// The frame whose header's last byte is the next one, if it was not
    /// admitted: its payload length, and whether it carries data (text,
    /// binary or continuation) rather than control.
    pub(crate) held: Option<(u64, bool)>,
}

/// The position in a server's WebSocket input.
#[derive(Debug)]
pub(crate) struct Scan {
    at: At,
}

impl Scan {
    /// A scan from the first byte of the upgrade request.
    pub(crate) fn new() -> Self {
        Scan { at: At::Request(0) }
    }

    /// The most bytes the next read should take: what is left of the
    /// payload under way and `ahead` more (so bytes read past a header
    /// that is held back are at most `ahead`).
    pub(crate) fn read_limit(&self, ahead: usize) -> usize {
        match self.at {
            At::Payload { left } => usize::try_from(left)
                .unwrap_or(usize::MAX)
                .saturating_add(ahead),
            _ => ahead,
        }
    }

    /// Goes through `bytes`, the next ones of the stream. Before the last
    /// byte of each header of a frame with a payload, asks `admit` (with
    /// its payload length and whether it carries data); if it says no,
    /// stops there: that byte and the rest are not used.
    pub(crate) fn feed(&mut self, bytes: &[u8], mut admit: impl FnMut(u64, bool) -> bool) -> Fed {
        let mut used = 0;
        while used < bytes.len() {
            let rest = &bytes[used..];
            match &mut self.at {
                At::Request(matched) => {
                    let mut n = 0;
                    for &b in rest {
                        n += 1;
                        *matched = if b == HEAD_END[*matched] {
                            *matched + 1
                        } else {
                            usize::from(b == b'\r')
                        };
                        if *matched == HEAD_END.len() {
                            self.at = header();
                            break;
                        }
                    }
                    used += n;
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
                        let (len, data) = parse(&next[..target]);
                        if len > 0 && !admit(len, data) {
                            // Held before its last byte.
                            *head = next;
                            *have += n - 1;
                            used += n - 1;
                            return Fed {
                                used,
                                held: Some((len, data)),
                            };
                        }
                        self.at = if len == 0 {
                            header()
                        } else {
                            At::Payload { left: len }
                        };
                    } else {
                        *head = next;
                        *have += n;
                    }
                    used += n;
                }
                At::Payload { left } => {
                    let n = (*left).min(rest.len() as u64);
                    *left -= n;
                    used += n as usize;
                    if *left == 0 {
                        self.at = header();
                    }
                }
            }
        }
        Fed { used, held: None }
    }
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

/// A whole header's payload length, and whether the frame carries data
/// (opcodes 0 to 7; control frames are 8 to 15).
fn parse(head: &[u8]) -> (u64, bool) {
    let data = head[0] & 0x0f < 8;
    let len = match head[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        127 => u64::from_be_bytes(head[2..10].try_into().expect("8 bytes")),
        n => u64::from(n),
    };
    (len, data)
}

#[cfg(test)]
#[path = "ws_scan_tests.rs"]
mod tests;
