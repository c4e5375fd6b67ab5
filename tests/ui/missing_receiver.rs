use remote_core::{remote, Error};

#[remote]
pub trait Factory {
    fn create(name: String) -> Result<u64, Error>;
}

fn main() {}
