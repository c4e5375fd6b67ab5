use remote_core::{remote, Error};

#[remote]
pub trait Greeter {
    async fn greet(&self, name: &str) -> Result<String, Error>;
    async fn sum(&self, values: &[u64]) -> Result<u64, Error>;
}

fn main() {}
