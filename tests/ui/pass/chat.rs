//! The headline example: a chat room served as a trait object.
use std::sync::{Arc, Mutex};

use remote_core::{remote, Error, Remote, Wire};

#[derive(Debug, Clone, Wire)]
pub struct Message {
    pub user: String,
    pub text: String,
}

#[derive(Debug, Wire, thiserror::Error)]
pub enum ChatError {
    #[error("room is full")]
    Full,
    #[error("{0}")]
    Connection(String),
}

impl From<Error> for ChatError {
    fn from(e: Error) -> Self {
        ChatError::Connection(e.to_string())
    }
}

#[remote]
pub trait Chat {
    async fn post(&self, msg: Message) -> Result<u64, ChatError>;
    async fn history(&self) -> Result<Vec<Message>, Error>;
    fn count(&self) -> Result<u64, Error>;
    #[remote(name = "sub", requires_auth)]
    async fn subscribe(&self, listener: Remote<dyn Listener>) -> Result<(), Error>;
}

#[remote]
pub trait Listener {
    async fn on_message(&self, msg: Message) -> Result<(), Error>;
}

#[derive(Default)]
pub struct Room {
    messages: Mutex<Vec<Message>>,
}

#[remote]
impl Chat for Room {
    async fn post(&self, msg: Message) -> Result<u64, ChatError> {
        let mut m = self.messages.lock().unwrap();
        if m.len() > 100 {
            return Err(ChatError::Full);
        }
        m.push(msg);
        Ok(m.len() as u64)
    }
    async fn history(&self) -> Result<Vec<Message>, Error> {
        Ok(self.messages.lock().unwrap().clone())
    }
    fn count(&self) -> Result<u64, Error> {
        Ok(self.messages.lock().unwrap().len() as u64)
    }
    async fn subscribe(&self, listener: Remote<dyn Listener>) -> Result<(), Error> {
        let msg = Message { user: "room".into(), text: "welcome".into() };
        listener.on_message(msg).await
    }
}

fn main() {
    let chat: Remote<dyn Chat> = Remote::new(Arc::new(Room::default()));
    assert!(!chat.is_remote());
    fn client_traits<T: Chat + Clone + std::fmt::Debug>() {}
    client_traits::<ChatClient>();
}
