use remote_core::stream::RemoteStream;
use remote_core::{remote, Error};

#[remote]
pub trait Feed {
    #[remote(cache(ttl = "5s"))]
    async fn tail(&self, from: u64) -> Result<RemoteStream<String>, Error>;
}

fn main() {}
