use remote_core::{remote, Error};

#[remote]
pub trait Printer {
    async fn print(&self, text: impl Into<String>) -> Result<(), Error>;
}

fn main() {}
