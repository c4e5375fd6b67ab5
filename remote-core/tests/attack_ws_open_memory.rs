//! Over `ws://`, once a connection is open, tungstenite buffers a partial
//! message (up to `max_frame_len + 4`) where the frame reader does not see
//! it. It used to be counted nowhere: peers sending all but the last byte
//! of a 1 MiB message on each connection held `max_connections ×
//! max_frame_len` outside the budget (1 GiB at the defaults, PROTOCOL.md
//! §1.1). Now it counts in the budget (`transport/ws_meter.rs`): 64 KiB
//! per connection whatever the budget holds, past that only with room.
//! Measured with a counting global allocator (one test per binary).

#[path = "support/add.rs"]
mod add;
#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use counting::live;
use raw::{eventually, ws_binary, ws_frame, ws_upgraded};
use remote_core::{Connection, Limits};
use tokio::io::AsyncWriteExt;

const BUDGET: usize = 4 << 20;
const CONNS: usize = 16;
const ON_TOP: usize = 64 << 10;
static ZEROS: [u8; 16 << 10] = [0; 16 << 10];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_websocket_messages_of_open_connections_count_in_the_budget() {
    let limits = Limits {
        memory_budget: BUDGET,
        max_connections_per_peer: 64,
        ..Limits::default()
    };
    let server = add::serve("ws://127.0.0.1:0/", limits).await;
    let baseline = live();
    // Each: the upgrade and the hello exchanged (the connection is open:
    // this server asks for no authentication), then one binary message
    // announcing 1 MiB, of which all but one byte is sent.
    let len: u64 = 1 << 20;
    let mut head = vec![0x82u8, 0x80 | 127];
    head.extend_from_slice(&len.to_be_bytes());
    head.extend_from_slice(&[0, 0, 0, 0]); // masking key: payload as is
    let mut writers = Vec::new();
    for _ in 0..CONNS {
        let mut r = ws_upgraded(&server).await;
        r.get_mut()
            .write_all(&ws_binary(&raw::hello(vec![])))
            .await
            .unwrap();
        let (_, their_hello) = raw::bounded(ws_frame(&mut r)).await.expect("a hello");
        assert_eq!(raw::kind(&their_hello[4..]), 0, "the server's hello");
        let head = head.clone();
        // Writes that stop when the server stops reading: in a task each,
        // from one static buffer (the heap measured is the server's).
        writers.push(tokio::spawn(async move {
            let _ = r.get_mut().write_all(&head).await;
            let mut left = len as usize - 1;
            while left > 0 {
                let n = left.min(ZEROS.len());
                if r.get_mut().write_all(&ZEROS[..n]).await.is_err() {
                    break;
                }
                left -= n;
            }
            std::future::pending::<()>().await;
            drop(r);
        }));
    }
    // Until the budget is full (or the heap grew past what the budget
    // allows, the bug).
    let allowed = BUDGET + CONNS * ON_TOP;
    let bound = allowed as isize + (2 << 20);
    let mut peak = 0;
    let end = tokio::time::Instant::now() + raw::WAIT;
    while tokio::time::Instant::now() < end {
        peak = peak.max(live() - baseline);
        if peak > bound || server.buffered_bytes() >= BUDGET - ON_TOP {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    peak = peak.max(live() - baseline);
    let counted = server.buffered_bytes();
    println!(
        "{CONNS} partial ws messages on open connections: live heap +{peak} bytes, counted \
         {counted} (budget {BUDGET})"
    );
    assert!(
        peak <= bound,
        "live heap grew {peak} bytes for {CONNS} partial messages, bound {bound}"
    );
    assert!(
        counted >= BUDGET - ON_TOP && counted <= allowed,
        "{counted} counted, budget {BUDGET}"
    );
    assert_eq!(server.connections(), CONNS, "held back, not refused");

    // A bystander's light calls are still served.
    let c = Connection::connect(server.local_addr()).await.unwrap();
    let api = c.root::<dyn add::Add>();
    assert_eq!(raw::bounded(api.add(2, 3)).await.unwrap(), 5);
    drop(api);
    c.close();

    // Gone with their connections: nothing stays counted.
    for w in writers {
        w.abort();
    }
    assert!(
        eventually(|| server.connections() == 0 && server.buffered_bytes() == 0).await,
        "{} connections, {} bytes counted",
        server.connections(),
        server.buffered_bytes()
    );
}
