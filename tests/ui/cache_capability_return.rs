use remote_core::{remote, Error, Remote};

#[remote]
pub trait Users {
    async fn name(&self) -> Result<String, Error>;
}

#[remote]
pub trait Sessions {
    #[remote(cache(ttl = "5s"))]
    async fn login(&self, user: String) -> Result<Remote<dyn Users>, Error>;
}

fn main() {}
