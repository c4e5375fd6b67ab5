use super::*;

/// A masked frame (the mask all zeros) with `opcode` and `payload`.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}

/// `(len, opcode, fin)` of a header.
fn said(h: Head) -> (u64, u8, bool) {
    (h.len, h.opcode, h.fin)
}

/// An upgrade request, then frames of every header form: a 16-bit length,
/// a ping, fragments (one empty), a pong with no payload, a 64-bit length.
fn stream() -> (Vec<u8>, Vec<(u64, u8, bool)>) {
    let mut wire = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    wire.extend(frame(true, 2, &[7; 300]));
    wire.extend(frame(true, 9, &[1; 20]));
    wire.extend(frame(false, 2, b"ab"));
    wire.extend(frame(false, 0, &[]));
    wire.extend(frame(true, 10, b""));
    wire.extend(frame(true, 0, &[3; 70_000]));
    let asked = vec![
        (300, 2, true),
        (20, 9, true),
        (2, 2, false),
        (0, 0, false),
        (0, 10, true),
        (70_000, 0, true),
    ];
    (wire, asked)
}

#[test]
fn every_frame_is_asked_for_once_whatever_the_reads_cut() {
    let (wire, want) = stream();
    for cut in [1, 2, 3, 7, 13, 100, 4096, wire.len()] {
        let mut s = Scan::new();
        let mut asked = Vec::new();
        for chunk in wire.chunks(cut) {
            let fed = s.feed(chunk, |h| {
                asked.push(said(h));
                true
            });
            assert_eq!(
                fed,
                Fed {
                    used: chunk.len(),
                    held: None,
                    more: false,
                }
            );
        }
        assert_eq!(asked, want, "read {cut} bytes at a time");
    }
}

#[test]
fn a_frame_not_admitted_is_held_before_its_headers_last_byte() {
    let (wire, _) = stream();
    // The 300-byte frame's header: 8 bytes, right after the request.
    let start = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let last = start + 7;
    for cut in [1, 5, 9, wire.len()] {
        let mut s = Scan::new();
        let mut at = 0;
        let mut refusals = 0;
        while at < wire.len() {
            let end = (at + cut).min(wire.len());
            // Refused twice, then admitted.
            let fed = s.feed(&wire[at..end], |h| {
                if h.len == 300 && refusals < 2 {
                    refusals += 1;
                    return false;
                }
                true
            });
            match fed.held {
                Some(held) => {
                    assert_eq!(said(held), (300, 2, true));
                    assert_eq!(
                        at + fed.used,
                        last,
                        "held at the last byte, read {cut} at a time"
                    );
                }
                None => assert_eq!(fed.used, end - at),
            }
            at += fed.used;
        }
        assert_eq!(refusals, 2);
    }
}

#[test]
fn reads_stop_near_the_next_header() {
    let mut s = Scan::new();
    assert_eq!(s.read_limit(16), 16, "in the request");
    let mut wire = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    wire.extend(&frame(true, 2, &[0; 1000])[..8 + 10]);
    s.feed(&wire, |_| true);
    assert_eq!(
        s.read_limit(16),
        990 + 16,
        "the payload left, then a little"
    );
}

#[test]
fn a_request_ends_where_tungstenites_parser_says() {
    // Lines ending in `\n` alone, and blank lines before the request
    // line, which httparse skips (a scan that looked for `\r\n\r\n` was
    // desynchronised by both: a red-team pass), and a request cut
    // anywhere.
    let requests: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"\r\n\r\nGET / HTTP/1.1\r\nX-Pad: \x82\xff~~~~~~~~zzzz\r\n\r\n",
    ];
    for request in requests {
        let mut wire = request.to_vec();
        wire.extend(frame(true, 2, b"counted"));
        for cut in [1, 3, wire.len()] {
            let mut s = Scan::new();
            let mut asked = Vec::new();
            for chunk in wire.chunks(cut) {
                s.feed(chunk, |h| {
                    asked.push(said(h));
                    true
                });
            }
            assert_eq!(
                asked,
                [(7, 2, true)],
                "{:?}, cut {cut}",
                String::from_utf8_lossy(request)
            );
        }
    }
    // A request tungstenite refuses stays one: nothing after it counts
    // (the connection fails).
    let mut s = Scan::new();
    let mut asked = 0;
    s.feed(b"GET / HTTP/1.1\r\n\rx\r\n\r\n", |_| true);
    s.feed(&frame(true, 2, b"never"), |_| {
        asked += 1;
        true
    });
    assert_eq!(asked, 0);
}

#[test]
fn at_rest_only_between_frames_and_outside_a_message_in_fragments() {
    let (wire, _) = stream();
    let request = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    // Where each frame of `stream()` ends, and the rest there.
    let mut ends = vec![(request, Some(0))];
    let mut at = request;
    for (len, rest) in [
        (300 + 8, Some(1)),
        (20 + 6, Some(2)),
        (2 + 6, None), // a message in fragments begins
        (6, None),
        (6, None), // a pong between its fragments
        (70_000 + 14, Some(4)),
    ] {
        at += len;
        ends.push((at, rest));
    }
    assert_eq!(at, wire.len());
    let mut s = Scan::new();
    for i in 0..wire.len() {
        s.feed(&wire[i..=i], |_| true);
        let want = ends.iter().find(|(end, _)| *end == i + 1).and_then(|e| e.1);
        assert_eq!(s.rest(), want, "after byte {i}");
    }
}

#[test]
fn after_a_large_data_frame_each_feed_stops_at_a_frame_end() {
    let mut wire = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    let request = wire.len();
    let small = frame(true, 2, &[1; 100]);
    wire.extend(&small);
    wire.extend(&small);
    wire.extend(frame(true, 2, &[2; 20_000]));
    let large_end = wire.len();
    wire.extend(frame(true, 9, b"ping"));
    let ping_end = wire.len();
    wire.extend(&small);
    let mut s = Scan::new();
    // Small frames go on together.
    let fed = s.feed(&wire[..request + small.len() * 2], |_| true);
    assert_eq!(fed.used, request + small.len() * 2);
    assert!(!s.stop_at_ends);
    let mut s = Scan::new();
    let fed = s.feed(&wire, |_| true);
    assert_eq!(fed.used, large_end, "stops where the large frame ends");
    assert!(s.stop_at_ends);
    assert_eq!(s.rest(), Some(3));
    let fed = s.feed(&wire[large_end..], |_| true);
    assert_eq!(fed.used, ping_end - large_end, "and at the next end");
    assert_eq!(s.rest(), Some(4));
    // Cleared by the caller: the rest goes on together again.
    s.stop_at_ends = false;
    let fed = s.feed(&wire[ping_end..], |_| true);
    assert_eq!(fed.used, wire.len() - ping_end);
    assert_eq!(s.rest(), Some(5));
}

#[test]
fn inside_a_message_in_fragments_the_scan_does_not_stop() {
    let mut wire = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    let request = wire.len();
    wire.extend(frame(false, 2, &[1; 20_000]));
    let first_end = wire.len();
    wire.extend(frame(true, 10, b""));
    wire.extend(frame(true, 10, b""));
    wire.extend(frame(true, 0, b"end"));
    let message_end = wire.len();
    wire.extend(frame(true, 9, b""));
    let mut s = Scan::new();
    let fed = s.feed(&wire[..request], |_| true);
    assert_eq!(fed.used, request);
    let fed = s.feed(&wire[request..], |_| true);
    assert!(s.stop_at_ends);
    assert_eq!(
        request + fed.used,
        message_end,
        "past the pongs, to the message's end ({first_end} is its first fragment's)"
    );
    assert_eq!(s.rest(), Some(3));
}

/// A first fragment is asked for only once the protocol's length prefix
/// at the start of its payload is there too (unmasked, it tells the whole
/// message's length); until then the scan holds its header's last byte
/// and says it needs more.
#[test]
fn a_first_fragment_is_asked_for_with_its_messages_length() {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let prefix = 300_000u32.to_be_bytes();
    let mut wire = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    let request = wire.len();
    wire.extend([0x02, 0x80 | 126]);
    wire.extend(1000u16.to_be_bytes());
    wire.extend(mask);
    let header = wire.len() - request;
    wire.extend((0..1000).map(|i| {
        let plain = if i < 4 { prefix[i] } else { 9 };
        plain ^ mask[i % 4]
    }));
    for got in [request + header, request + header + 3] {
        let mut s = Scan::new();
        let fed = s.feed(&wire[..got], |_| panic!("asked before its prefix"));
        let want = Fed {
            used: request + header - 1,
            held: None,
            more: true,
        };
        assert_eq!(fed, want, "{got} bytes");
        // Given the rest from the byte held back, it asks once.
        let mut asked = Vec::new();
        let fed = s.feed(&wire[request + header - 1..], |h| {
            asked.push(h.message);
            true
        });
        assert_eq!(fed.used, wire.len() - (request + header - 1));
        assert_eq!(asked, [Some(300_004)]);
    }
    // What may be handed on is cut short of the prefix: it is still read.
    let mut s = Scan::new();
    let mut asked = Vec::new();
    let fed = s.feed_up_to(&wire, request + header, |h| {
        asked.push(h.message);
        true
    });
    assert_eq!(fed.used, request + header);
    assert_eq!(asked, [Some(300_004)]);
    // A message in one frame, or a first fragment shorter than a prefix,
    // is asked for from its header alone.
    for (first, len) in [(0x82, 1000u16), (0x02, 3)] {
        let mut s = Scan::new();
        let mut head = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        head.extend([first, 0x80 | 126]);
        head.extend(len.to_be_bytes());
        head.extend(mask);
        let mut asked = Vec::new();
        let fed = s.feed(&head, |h| {
            asked.push(h.message);
            true
        });
        assert_eq!((fed.used, fed.more), (head.len(), false));
        assert_eq!(asked, [None]);
    }
}
