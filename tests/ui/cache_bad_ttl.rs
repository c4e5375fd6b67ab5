use remote_core::{remote, Error};

#[remote]
pub trait Store {
    #[remote(cache(ttl = "5 parsecs"))]
    async fn get(&self, key: String) -> Result<String, Error>;
    #[remote(cache)]
    async fn list(&self) -> Result<Vec<String>, Error>;
}

fn main() {}
