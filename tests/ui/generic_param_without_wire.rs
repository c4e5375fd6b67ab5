use remote_core::{remote, Error};

#[remote]
pub trait Store<T: Clone> {
    async fn put(&self, value: T) -> Result<(), Error>;
}

fn main() {}
