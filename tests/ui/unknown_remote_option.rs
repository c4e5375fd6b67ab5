use remote_core::{remote, Error};

#[remote(crates = "remote_core")]
pub trait Chat {
    #[remote(rename = "send")]
    async fn post(&self, text: String) -> Result<u64, Error>;
    #[remote(requires_auth, timeout = 5)]
    async fn delete(&self, id: u64) -> Result<(), Error>;
}

fn main() {}
