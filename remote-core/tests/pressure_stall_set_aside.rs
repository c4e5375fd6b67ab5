//! A frame's rest keeps its pace while calls of the same connection are
//! set aside (waiting for output room): the peer still has to send it.
//! (Red-team pass 26: three peers each with a slow call running and a
//! light call set aside, then 1 KiB of a 1 MB frame, held a budget short
//! for as long as they liked, as the pace was not kept while a call was
//! set aside; an honest heavy call never started.)

#[path = "support/gate.rs"]
mod gate;
#[path = "support/holder.rs"]
mod holder;
#[path = "support/noted.rs"]
mod noted;
#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use gate::Gate;
use holder::{hold_frame, Holder, Impl};
use remote_core::{Limits, Remote, Server};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_behind_a_call_set_aside_keeps_its_pace() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let gate = Arc::new(Gate::default());
        let reasons = noted::Reasons::default();
        let r = reasons.clone();
        let g = gate.clone();
        let server = Server::builder()
            .limits(Limits {
                memory_budget: 3584 << 10,
                pressure_stall_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(600),
                unauthenticated_idle_timeout: Duration::from_secs(600),
                ..Limits::default()
            })
            .on_event(move |e| {
                if let remote_core::ServerEvent::Closed { reason, .. } = e {
                    r.lock().unwrap().push(reason);
                }
            })
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(move |_| Remote::new(Arc::new(Impl(g.clone())) as Arc<dyn Holder>));
        let addr = raw::tcp_addr(&server);
        let mut attackers = Vec::new();
        for i in 0..3 {
            let mut s = raw::silent_from(2, &addr).await;
            // A call that runs until the gate opens: its reply would take
            // the connection's one running handler's room, so the light
            // call behind it is set aside.
            s.write_all(&hold_frame(1, 0)).await.unwrap();
            assert!(raw::eventually(|| gate.running.load(SeqCst) == i + 1).await);
            s.write_all(&raw::call(2, 0, "add", 600_000, &[0x92, 0x01, 0x02]))
                .await
                .unwrap();
            // Then 1 KiB of a frame of 1 MB, its room reserved.
            s.write_all(&(1_000_000u32 - 4).to_be_bytes())
                .await
                .unwrap();
            s.write_all(&[0xc0; 1 << 10]).await.unwrap();
            attackers.push(s);
        }
        // An honest call of 900 KiB waits for room: attackers are closed
        // for their pace (as many as the room needs), and it starts.
        let mut honest = raw::opened(&server).await;
        let mut args = vec![0x91, 0xdd, 0, 0, 0, 1, 0xdb];
        args.extend_from_slice(&(900u32 << 10).to_be_bytes());
        args.resize(args.len() + (900 << 10), b'w');
        honest
            .write_all(&raw::call(1, 0, "hold", 60_000, &args))
            .await
            .unwrap();
        let closed = || noted::closed_for(&reasons, "pressure_stall_timeout");
        // Running: the holds of the attackers left, and the honest one.
        let started = || closed() >= 1 && gate.running.load(SeqCst) == 3 - closed() + 1;
        assert!(
            raw::eventually(started).await,
            "attackers closed for their pace: {}; handlers running: {}",
            closed(),
            gate.running.load(SeqCst)
        );
        gate.open.add_permits(100);
        drop(attackers);
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await
    .expect("within 90 s");
}
