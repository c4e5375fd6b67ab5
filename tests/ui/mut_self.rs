use remote_core::{remote, Error};

#[remote]
pub trait Counter {
    async fn increment(&mut self) -> Result<u64, Error>;
}

fn main() {}
