use remote_core::{remote, Error, Remote};

#[remote]
pub trait Sessions {
    #[remote(cache(ttl = "5s"))]
    async fn login(&self, user: String) -> Result<Remote<dyn Sessions>, Error>;
}

fn main() {}
