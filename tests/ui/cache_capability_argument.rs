use remote_core::{remote, Error, Remote};

#[remote]
pub trait Sessions {
    #[remote(cache(ttl = "5s"))]
    async fn name_of(&self, session: Remote<dyn Sessions>) -> Result<String, Error>;
}

fn main() {}
