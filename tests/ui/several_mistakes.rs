use remote_core::{remote, Error};

#[remote]
pub trait Account {
    async fn deposit(&mut self, amount: u64) -> Result<u64, Error>;
    async fn owner(&self) -> String;
    async fn rename(&self, name: &str) -> Result<(), Error>;
    fn open() -> Result<u64, Error>;
}

// The trait is still emitted (without the generated items), so code that
// names it reports no further errors.
pub fn uses<A: Account>(_: A) {}

fn main() {}
