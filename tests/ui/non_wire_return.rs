use remote_core::{remote, Error};

#[remote]
pub trait Files {
    async fn open(&self, path: String) -> Result<std::fs::File, Error>;
}

fn main() {}
