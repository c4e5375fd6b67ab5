use remote_core::{remote, Error};

// A remote trait has methods only: constants and types are each reported.
#[remote]
pub trait Limited {
    const LIMIT: u32;
    type Item;
    async fn used(&self) -> Result<u32, Error>;
}

fn main() {}
