use remote_core::{remote, Error, Wire};

#[remote]
pub trait Store {
    async fn put<T: Wire>(&self, value: T) -> Result<(), Error>;
}

fn main() {}
