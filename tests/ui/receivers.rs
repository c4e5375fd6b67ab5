use remote_core::{remote, Error};

// Every receiver a remote method cannot have, reported together.
#[remote]
pub trait Session {
    async fn increment(&mut self) -> Result<u64, Error>;
    async fn close(self) -> Result<(), Error>;
    fn create(name: String) -> Result<u64, Error>;
}

fn main() {}
