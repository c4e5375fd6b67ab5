use remote_core::{remote, Wire};

#[derive(Debug, Wire)]
pub enum ChatError {
    RoomFull,
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("room is full")
    }
}

impl std::error::Error for ChatError {}

#[remote]
pub trait Chat {
    async fn post(&self, text: String) -> Result<u64, ChatError>;
}

fn main() {}
