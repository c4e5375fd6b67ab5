use remote_core::{remote, Error, Remote};

#[remote]
pub trait Users {
    async fn name(&self) -> Result<String, Error>;
}

#[remote]
pub trait Sessions {
    #[remote(cache(ttl = "5s"))]
    async fn name_of(&self, session: Remote<dyn Users>) -> Result<String, Error>;
}

fn main() {}
