use remote_core::{remote, Error};

#[remote]
pub trait Source {
    type Item;
    async fn next(&self) -> Result<u64, Error>;
}

fn main() {}
