//! Ready-made shared collections, and a lazily pulled stream.
//!
//! The server's root (`Board`) hands out a `SharedMap` (scores) and a
//! `SharedVec` (an event log). alice and bob each subscribe to both, and
//! each sees every change, whoever made it. Then bob pulls a
//! `RemoteStream` of squares 4 at a time: the server computes the next
//! batch only when bob has consumed the previous one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use remote_core::collections::{on_change, on_push, RemoteList, RemoteMap, SharedMap, SharedVec};
use remote_core::stream::RemoteStream;
use remote_core::{Connection, Error, Remote, Server};
use remote_examples::collections::Board;
use remote_examples::{say, Transcript};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// The server's state, shared by every connection.
#[derive(Clone)]
struct Game {
    scores: Arc<SharedMap<String, i64>>,
    log: Arc<SharedVec<String>>,
    out: Transcript,
}

#[remote_core::remote]
impl Board for Game {
    async fn scores(&self) -> Result<Remote<dyn RemoteMap<String, i64>>, Error> {
        Ok(self.scores.remote())
    }

    async fn log(&self) -> Result<Remote<dyn RemoteList<String>>, Error> {
        Ok(self.log.remote())
    }

    async fn squares(&self, n: u64) -> Result<RemoteStream<u64>, Error> {
        let out = self.out.clone();
        Ok(RemoteStream::new(futures_util::stream::iter(0..n).map(
            move |i| {
                say!(out, "  server: computing {i}^2");
                i * i
            },
        )))
    }
}

/// One client: its proxies, and what its subscriptions delivered.
struct Player {
    name: &'static str,
    board: Remote<dyn Board>,
    scores: Remote<dyn RemoteMap<String, i64>>,
    log: Remote<dyn RemoteList<String>>,
    seen: UnboundedReceiver<String>,
}

impl Player {
    async fn join(name: &'static str, addr: &str) -> remote_core::Result<Player> {
        let board = Connection::connect(addr).await?.root::<dyn Board>();
        let (scores, log) = (board.scores().await?, board.log().await?);
        let (tx, seen) = unbounded_channel();
        let tx2 = tx.clone();
        scores
            .subscribe(on_change(move |k, v: Option<i64>| {
                let _ = tx.send(match v {
                    Some(v) => format!("scores[{k:?}] = {v}"),
                    None => format!("scores[{k:?}] removed"),
                });
            }))
            .await?;
        log.subscribe(on_push(move |i, line: String| {
            let _ = tx2.send(format!("log[{i}] = {line:?}"));
        }))
        .await?;
        Ok(Player {
            name,
            board,
            scores,
            log,
            seen,
        })
    }

    /// Prints the next change this player's subscriptions delivered.
    async fn show_next(&mut self, out: &Transcript) -> remote_core::Result<()> {
        let change = tokio::time::timeout(Duration::from_secs(30), self.seen.recv())
            .await
            .ok()
            .flatten()
            .ok_or_else(|| Error::Io(format!("{} got no change notification", self.name)))?;
        say!(out, "    {:<5} sees {change}", self.name);
        Ok(())
    }
}

/// The demo: a server and two clients over TCP.
pub async fn run(out: &Transcript) -> remote_core::Result<()> {
    let game = Game {
        scores: SharedMap::new(),
        log: SharedVec::new(),
        out: out.clone(),
    };
    let served = game.clone();
    let server = Server::bind("tcp://127.0.0.1:0")
        .await?
        .serve(move |_| -> Remote<dyn Board> { Remote::new(Arc::new(served.clone())) });
    let mut alice = Player::join("alice", server.local_addr()).await?;
    let mut bob = Player::join("bob", server.local_addr()).await?;

    say!(out, "alice: scores.insert(\"alice\", 10)");
    alice.scores.insert("alice".into(), 10).await?;
    both_see(out, &mut alice, &mut bob).await?;

    say!(out, "bob: scores.insert(\"bob\", 7)");
    bob.scores.insert("bob".into(), 7).await?;
    both_see(out, &mut alice, &mut bob).await?;

    say!(out, "bob: log.push(\"bob joined\")");
    bob.log.push("bob joined".into()).await?;
    both_see(out, &mut alice, &mut bob).await?;

    let before = alice.scores.insert("alice".into(), 12).await?;
    say!(
        out,
        "alice: scores.insert(\"alice\", 12) replaced {before:?}"
    );
    both_see(out, &mut alice, &mut bob).await?;

    say!(out, "bob: scores.remove(\"bob\")");
    bob.scores.remove("bob".into()).await?;
    both_see(out, &mut alice, &mut bob).await?;

    say!(
        out,
        "alice: scores.entries() = {:?}",
        alice.scores.entries(None).await?
    );
    say!(
        out,
        "bob: log.range(0, 10) = {:?}",
        bob.log.range(0, 10).await?
    );
    say!(
        out,
        "server: its own copy of the scores = {:?}",
        game.scores.snapshot()
    );

    say!(out, "bob: pulling board.squares(10), 4 per round trip");
    let mut squares = bob.board.squares(10).await?.with_batch(4);
    while let Some(square) = squares.next().await {
        say!(out, "    bob got {}", square?);
    }
    say!(out, "bob: stream ended");
    Ok(())
}

async fn both_see(out: &Transcript, a: &mut Player, b: &mut Player) -> remote_core::Result<()> {
    a.show_next(out).await?;
    b.show_next(out).await
}

#[tokio::main]
async fn main() -> remote_core::Result<()> {
    run(&Transcript::stdout()).await
}
