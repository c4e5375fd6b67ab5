use remote_core::{remote, Error};

#[remote]
pub trait Store {
    async fn get(&self, key: String) -> Result<String, Error>;
    #[remote(invalidates(get, lsit))]
    async fn put(&self, key: String, value: String) -> Result<(), Error>;
}

fn main() {}
