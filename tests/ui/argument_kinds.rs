use remote_core::{remote, Error, Wire};

// Arguments that cannot be decoded into owned values on the other side,
// and a generic method (no single wire signature), reported together.
#[remote]
pub trait Greeter {
    async fn greet(&self, name: &str) -> Result<String, Error>;
    async fn sum(&self, values: &[u64]) -> Result<u64, Error>;
    async fn print(&self, text: impl Into<String>) -> Result<(), Error>;
    async fn put<T: Wire>(&self, value: T) -> Result<(), Error>;
}

fn main() {}
