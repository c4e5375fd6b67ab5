//! The example of the repository's README, complete: a `Chat` trait whose
//! clients subscribe a `Listener` (the server calls back into them) and
//! post messages.

use std::sync::{Arc, Mutex};

use remote_core::{remote, Connection, Error, Remote, Server, Wire};
use remote_examples::{say, Transcript};

#[derive(Wire, Debug, Clone)]
pub struct Message {
    pub user: String,
    pub text: String,
}

#[remote]
pub trait Listener {
    async fn said(&self, msg: Message) -> Result<(), Error>;
}

#[remote]
pub trait Chat {
    async fn post(&self, user: String, text: String) -> Result<u64, Error>;
    async fn subscribe(&self, who: Remote<dyn Listener>) -> Result<(), Error>;
}

/// The server's room: who listens, and how many messages were posted.
#[derive(Default)]
struct MyRoom {
    listeners: Mutex<Vec<Remote<dyn Listener>>>,
    posted: Mutex<u64>,
}

#[remote]
impl Chat for MyRoom {
    async fn post(&self, user: String, text: String) -> Result<u64, Error> {
        let listeners = self.listeners.lock().unwrap().clone();
        for who in listeners {
            let msg = Message {
                user: user.clone(),
                text: text.clone(),
            };
            who.said(msg).await?; // a call back into the subscriber
        }
        let mut posted = self.posted.lock().unwrap();
        *posted += 1;
        Ok(*posted)
    }

    async fn subscribe(&self, who: Remote<dyn Listener>) -> Result<(), Error> {
        self.listeners.lock().unwrap().push(who);
        Ok(())
    }
}

/// A client's screen.
struct MyListener {
    name: &'static str,
    out: Transcript,
}

#[remote]
impl Listener for MyListener {
    async fn said(&self, msg: Message) -> Result<(), Error> {
        say!(self.out, "{} hears [{}] {}", self.name, msg.user, msg.text);
        Ok(())
    }
}

/// The demo: the server, then two clients that subscribe and post.
pub async fn run(out: &Transcript) -> remote_core::Result<()> {
    // Server: one room for every connection.
    let room = Arc::new(MyRoom::default());
    let server = Server::bind("tcp://127.0.0.1:0")
        .await?
        .serve(move |_| Remote::new(room.clone() as Arc<dyn Chat>));

    // Clients.
    let mut chats = Vec::new();
    for name in ["alice", "bob"] {
        let chat = Connection::connect(server.local_addr())
            .await?
            .root::<dyn Chat>();
        let listener = MyListener {
            name,
            out: out.clone(),
        };
        chat.subscribe(Remote::new(Arc::new(listener))).await?; // the server calls back into us
        chats.push(chat);
    }
    let n = chats[0].post("alice".into(), "hi".into()).await?;
    say!(out, "alice posted message {n}");
    let n = chats[1].post("bob".into(), "hello alice".into()).await?;
    say!(out, "bob posted message {n}");
    Ok(())
}

#[tokio::main]
async fn main() -> remote_core::Result<()> {
    run(&Transcript::stdout()).await
}
