//! A chat server can be as simple as exposing a list object and letting
//! users append their messages to it.
//!
//! The server serves a `SharedVec<Message>` as the root of every
//! connection. Two clients connect over TCP: bob subscribes (the server
//! calls him back on every append), both post, and alice reads the list.
//!
//! ```text
//! cargo run --example chat                                      # the demo
//! cargo run --example chat -- server tcp://127.0.0.1:7000       # terminal 1
//! cargo run --example chat -- client tcp://127.0.0.1:7000 ann   # terminal 2, 3, ...
//! ```
//!
//! With the page built (`examples/chat-web/build.sh`), a `ws://` server
//! also serves it to browsers, next to the terminal clients:
//!
//! ```text
//! cargo run --example chat -- server ws://127.0.0.1:7001/ --web target/chat-web
//! ```

use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{on_push, SharedVec};
use remote_core::{Connection, ConnectionBuilder, Limits, Server, ServerHandle};
use remote_examples::chat::{Chat, Message};
use remote_examples::static_files::StaticFiles;
use remote_examples::{say, Transcript};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The self-contained demo: a server and two clients, over TCP.
pub async fn demo(out: &Transcript) -> remote_core::Result<()> {
    // The whole server: one list of messages, served to every connection.
    let messages = SharedVec::<Message>::new();
    let listener = Server::bind("tcp://127.0.0.1:0").await?;
    let server = listener.serve(move |_| messages.remote());
    let addr = server.local_addr();
    say!(out, "server listening on {addr}");

    // bob connects and subscribes: the server calls him back on every post.
    let bob = Connection::connect(addr).await?.root::<Chat>();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let bobs_screen = out.clone();
    bob.subscribe(on_push(move |index, msg: Message| {
        say!(bobs_screen, "bob    <- #{index} {msg}");
        let _ = seen_tx.send(index);
    }))
    .await?;

    // alice connects; both post.
    let alice = Connection::connect(addr).await?.root::<Chat>();
    alice.push(Message::new("alice", "hi bob!")).await?;
    bob.push(Message::new("bob", "hey alice")).await?;
    alice.push(Message::new("alice", "it's just a Vec")).await?;

    // Once bob has seen all three, alice reads the whole list.
    while seen.recv().await.is_some_and(|index| index < 2) {}
    for msg in alice.range(0, 100).await? {
        say!(out, "alice  reads {msg}");
    }
    Ok(())
}

/// `chat server ADDR`: serves one shared list until killed.
pub async fn serve(addr: &str) -> remote_core::Result<ServerHandle> {
    Ok(serve_list(addr).await?.0)
}

/// [`serve`], also returning the list (its subscriber count is what the
/// browser test checks).
pub async fn serve_list(
    addr: &str,
) -> remote_core::Result<(ServerHandle, Arc<SharedVec<Message>>)> {
    let messages = SharedVec::<Message>::new();
    let server = Server::builder().limits(patient()).bind(addr).await?;
    let list = messages.clone();
    Ok((server.serve(move |_| list.remote()), messages))
}

/// `--web DIR`: serves the built page (index.html, pkg/) on a free
/// loopback port; returns the server and the page's URL for `ws_addr`.
pub fn serve_page(dir: &str, ws_addr: &str) -> std::io::Result<(StaticFiles, String)> {
    let files = StaticFiles::serve(dir, "127.0.0.1:0")?;
    let url = format!("http://{}/?ws={ws_addr}", files.addr());
    Ok((files, url))
}

/// `chat client ADDR NAME`: prints the last 20 messages, posts each line of
/// `input`, and prints the others' messages as they arrive. Returns at the
/// end of `input` (or with an error when the server goes away).
pub async fn client(
    addr: &str,
    name: &str,
    input: impl AsyncBufRead + Unpin,
    out: &Transcript,
) -> remote_core::Result<()> {
    let conn = ConnectionBuilder::new()
        .limits(patient())
        .connect(addr)
        .await?;
    let chat = conn.root::<Chat>();
    let count = chat.len().await?;
    for msg in chat.range(count.saturating_sub(20), count).await? {
        say!(out, "{msg}");
    }
    let (me, screen) = (name.to_owned(), out.clone());
    chat.subscribe(on_push(move |_, msg: Message| {
        if msg.user.as_str() != me {
            say!(screen, "{msg}");
        }
    }))
    .await?;
    let mut lines = input.lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => chat.push(Message::new(name, line)).await.map(drop)?,
                None => break,
            },
            why = conn.closed() => return Err(why),
        }
    }
    conn.close();
    Ok(())
}

/// Interactive peers may stay quiet for a long time.
fn patient() -> Limits {
    Limits {
        idle_timeout: Duration::from_secs(24 * 3600),
        ..Limits::default()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        [] => demo(&Transcript::stdout()).await?,
        ["server", addr] | ["server", addr, "--web", _] => {
            let server = serve(addr).await?;
            eprintln!("chat server on {} (Ctrl-C to stop)", server.local_addr());
            let _page = match args[..] {
                [_, _, "--web", dir] => {
                    let (files, url) = serve_page(dir, server.local_addr())?;
                    eprintln!("chat page: open {url}");
                    Some(files)
                }
                _ => None,
            };
            // Serve until Ctrl-C; then refuse new connections, let calls in
            // flight finish for up to 5 s, and say goodbye to every client.
            let ctrl_c = async {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("shutting down");
            };
            server.run_until(ctrl_c, Duration::from_secs(5)).await;
        }
        ["client", addr, name] => {
            eprintln!("chatting as {name} on {addr}: type a line to post it, Ctrl-D to leave");
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            let result = client(addr, name, stdin, &Transcript::stdout()).await;
            // Exit now: a read of the terminal cannot be cancelled, and the
            // runtime would wait for it when shutting down.
            if let Err(e) = result {
                eprintln!("chat: {e}");
                std::process::exit(1);
            }
            std::process::exit(0);
        }
        _ => {
            eprintln!("usage: chat [server ADDR [--web DIR] | client ADDR NAME]   (ADDR: tcp://host:port, unix:///path or ws://host:port/)");
            std::process::exit(2);
        }
    }
    Ok(())
}
