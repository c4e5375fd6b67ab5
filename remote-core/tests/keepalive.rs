//! Keepalive: a peer that stops answering is declared lost at once; pings
//! are only sent to peers that negotiated them, and never keep an idle
//! connection open. Runs on tokio's paused clock over in-memory pipes.

#[path = "support/pipe.rs"]
mod pipe;
mod support;

use std::sync::Arc;
use std::time::Duration;

use pipe::{frame, head, raw_peer, PeerRead, PeerWrite};
use remote_core::proto::{encode_pong, Reader};
use remote_core::{with_timeout, Connection, Error, Limits};
use support::{Calc, Counter, Stats};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

fn limits(every: u64, wait: u64) -> Limits {
    Limits {
        keepalive_interval: Some(Duration::from_millis(every)),
        keepalive_timeout: Duration::from_millis(wait),
        ..Limits::default()
    }
}

/// Our connection serving a counter over a pipe to a raw peer that sent a
/// hello listing `features`; returns the peer's halves.
async fn connect(limits: Limits, features: Vec<&str>) -> (Connection, PeerRead, PeerWrite) {
    raw_peer(
        Counter::remote(0, Arc::new(Stats::default())),
        limits,
        features,
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_answering_is_declared_lost_and_calls_fail_at_once() {
    let (conn, mut tr, _tw) = connect(limits(1000, 2000), vec!["keepalive"]).await;
    // The peer reads everything and answers nothing (as if stopped).
    let peer = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(f) = frame(&mut tr).await {
            if head(&f).0 == 7 {
                pings += 1;
            }
        }
        pings
    });
    let started = Instant::now();
    let calc = conn.root::<dyn Calc>();
    let err = with_timeout(Duration::from_secs(600), calc.add(1, 2))
        .await
        .unwrap_err();
    let Error::ConnectionLost(why) = &err else {
        panic!("expected connection_lost, got {err:?}");
    };
    assert!(why.contains("keepalive_timeout = 2s"), "{why}");
    // Found by keepalive (at most 2 intervals + the timeout), not by the
    // call's 600 s deadline.
    assert!(
        started.elapsed() <= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(conn.is_closed());
    assert!(peer.await.unwrap() >= 1, "a ping was sent");
}

#[tokio::test(start_paused = true)]
async fn answered_pings_do_not_keep_an_idle_connection_open() {
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        ..limits(100, 100)
    };
    let (conn, mut tr, mut tw) = connect(limits, vec!["keepalive"]).await;
    // The peer answers every ping with a pong echoing its token.
    let mut pings = 0;
    let answer = async {
        loop {
            let f = frame(&mut tr).await.expect("a goodbye before the end");
            match head(&f) {
                (7, Some(token)) => {
                    pings += 1;
                    tw.write_all(&encode_pong(token as u32)).await.unwrap();
                }
                (6, _) => {
                    let mut r = Reader::new(&f[2..]);
                    break r.str().unwrap().to_owned();
                }
                _ => {}
            }
        }
    };
    // Virtual time: a minute is many idle timeouts.
    let reason = tokio::time::timeout(Duration::from_secs(60), answer)
        .await
        .expect("closed for idleness despite the pings");
    assert!(
        reason.contains("no traffic for idle_timeout = 1s"),
        "{reason}"
    );
    assert!(pings >= 3, "{pings} pings answered");
    assert!(conn.closed().await.to_string().contains("idle_timeout"));
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_did_not_list_the_feature_never_receives_pings() {
    let (conn, mut tr, _tw) = connect(limits(100, 100), vec![]).await;
    // Our hello first, then nothing at all for many intervals.
    let ours = frame(&mut tr).await.unwrap();
    assert_eq!(head(&ours).0, 0);
    let next = tokio::time::timeout(Duration::from_secs(10), frame(&mut tr)).await;
    assert!(next.is_err(), "a frame was sent: {next:?}");
    assert!(!conn.is_closed());
}
