//! What a WebSocket server connection keeps, outside the memory budget,
//! after a large message in: tungstenite's read buffer grows to the
//! largest frame read and kept that capacity for the connection's life (a
//! red-team pass measured 16 idle connections that had each sent one
//! 1 MiB call holding +17.4 MB: `max_connections × max_frame_len` at
//! worst). Now the server replaces tungstenite's buffers once they hold
//! nothing (`transport/ws.rs`, `shed`), whatever follows the large
//! message: a ping (its pong unflushed), a message in fragments, or the
//! first bytes of a next frame. Measured with a counting global allocator
//! (one measuring test at a time).

#[path = "support/add.rs"]
mod add;
#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use counting::{live, measured};
use raw::{eventually, ws_binary, ws_frame, ws_upgraded};
use remote_core::Limits;
use tokio::io::AsyncWriteExt;

const CONNS: usize = 16;
const MESSAGE: usize = (1 << 20) - 256;
/// What an idle connection may keep beyond what it kept before its large
/// message (about 1 MiB more before the fix).
const KEPT: isize = 128 << 10;

/// A masked (key 0) client frame: `opcode`, `fin`, the payload.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | opcode, 0x80 | 127];
    f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}

/// A call of `add` with a 1 MiB binary among its arguments (answered
/// with an error: the server reads it whole, then answers).
fn large_call() -> Vec<u8> {
    let mut args = vec![0x92, 0x01, 0xc6];
    args.extend_from_slice(&(MESSAGE as u32).to_be_bytes());
    args.resize(args.len() + MESSAGE, 7);
    raw::call(1, 0, "add", 60_000, &args)
}

/// What follows the hello on each connection.
#[derive(Clone, Copy, Debug)]
enum After {
    /// The large call alone.
    Alone,
    /// The large call, then a ping.
    Ping,
    /// The large call in two fragments, a ping between them.
    Fragments,
    /// The large call, then the first three bytes of a frame header.
    PartHeader,
}

fn bytes(after: After) -> Vec<u8> {
    let call = large_call();
    let ping = frame(true, 9, b"hi");
    match after {
        After::Alone => ws_binary(&call),
        After::Ping => [ws_binary(&call), ping].concat(),
        After::Fragments => {
            let (a, b) = call.split_at(call.len() / 2);
            [frame(false, 2, a), ping, frame(true, 0, b)].concat()
        }
        After::PartHeader => [ws_binary(&call), vec![0x82, 0x80 | 127, 0]].concat(),
    }
}

/// `CONNS` connections each send a large call (and what `after` says),
/// get its answer and idle: each keeps little more than before.
fn idle_after_a_large_message(after: After) {
    measured(measure(after));
}

async fn measure(after: After) {
    let limits = Limits {
        max_connections_per_peer: 64,
        ..Limits::default()
    };
    let server = add::serve("ws://127.0.0.1:0/", limits).await;
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        let mut r = ws_upgraded(&server).await;
        r.get_mut()
            .write_all(&ws_binary(&raw::hello(vec![])))
            .await
            .unwrap();
        let (_, their_hello) = raw::bounded(ws_frame(&mut r)).await.expect("a hello");
        assert_eq!(raw::kind(&their_hello[4..]), 0, "the server's hello");
        conns.push(r);
    }
    assert!(eventually(|| server.connections() == CONNS).await);
    let baseline = live();
    let sent = bytes(after);
    for r in &mut conns {
        r.get_mut().write_all(&sent).await.unwrap();
        // The answer (an error: `add` takes two integers), and the pong
        // of a ping sent.
        let mut answered = false;
        let mut ponged = matches!(after, After::Alone | After::PartHeader);
        while !(answered && ponged) {
            let (op, p) = raw::bounded(ws_frame(r)).await.expect("a frame");
            match op {
                0xA => ponged = true,
                2 => {
                    let kind = raw::kind(&p[4..]);
                    assert!(
                        kind == raw::ERROR || kind == raw::RETURN,
                        "an answer, not {kind}"
                    );
                    answered = true;
                }
                other => panic!("websocket opcode {other}"),
            }
        }
    }
    let per_connection = || (live() - baseline) / CONNS as isize;
    let settled = eventually(|| per_connection() < KEPT).await;
    println!(
        "{after:?}: an idle ws connection keeps {} KiB more after a 1 MiB message",
        per_connection() >> 10
    );
    assert!(
        settled,
        "{after:?}: {} KiB more per idle connection",
        per_connection() >> 10
    );
    assert_eq!(server.connections(), CONNS, "all still open");
    // Still served after the buffers were replaced.
    for r in &mut conns {
        if let After::PartHeader = after {
            // The header's rest, and a call of `add`.
            let call = raw::call(2, 0, "add", 60_000, &[0x92, 0x02, 0x03]);
            let mut rest = ((call.len() as u64).to_be_bytes()[1..]).to_vec();
            rest.extend_from_slice(&[0; 4]);
            rest.extend_from_slice(&call);
            r.get_mut().write_all(&rest).await.unwrap();
        } else {
            let call = raw::call(2, 0, "add", 60_000, &[0x92, 0x02, 0x03]);
            r.get_mut().write_all(&ws_binary(&call)).await.unwrap();
        }
        let (op, p) = raw::bounded(ws_frame(r)).await.expect("a frame");
        assert_eq!(op, 2);
        assert_eq!(raw::kind(&p[4..]), raw::RETURN, "2 + 3 answered");
    }
    drop(conns);
    assert!(eventually(|| server.connections() == 0).await);
}

#[test]
fn a_large_message_alone() {
    idle_after_a_large_message(After::Alone);
}

#[test]
fn a_large_message_then_a_ping() {
    idle_after_a_large_message(After::Ping);
}

#[test]
fn a_large_message_in_fragments_with_a_ping_between() {
    idle_after_a_large_message(After::Fragments);
}

#[test]
fn a_large_message_then_part_of_a_header() {
    idle_after_a_large_message(After::PartHeader);
}
