use remote_core::{remote, Error};

#[remote]
pub trait Limited {
    const LIMIT: u32;
    async fn used(&self) -> Result<u32, Error>;
}

fn main() {}
