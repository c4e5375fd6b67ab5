use remote_core::{remote, Error};

#[remote]
pub trait Session {
    async fn close(self) -> Result<(), Error>;
}

fn main() {}
