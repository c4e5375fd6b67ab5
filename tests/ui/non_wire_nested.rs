// A non-wire type inside a container, in two methods: one error where it
// is written, naming the container (the notes say what to add).
use remote_core::{remote, Error};

pub struct Config;

#[remote]
pub trait Settings {
    async fn apply(&self, configs: Vec<Config>) -> Result<(), Error>;
    fn current(&self) -> Result<Option<Config>, Error>;
}

fn main() {}
