use remote_core::{remote, Error, Remote};

#[remote]
pub trait Users {
    async fn name(&self) -> Result<String, Error>;
}

#[remote]
pub trait Sessions {
    #[remote(memoize(ttl = "5s"))]
    async fn login(&self, user: String) -> Result<Remote<dyn Users>, Error>;
    #[remote(memoize(ttl = "soon"))]
    async fn count(&self) -> Result<u64, Error>;
    #[remote(memoize)]
    async fn total(&self) -> Result<u64, Error>;
}

fn main() {}
