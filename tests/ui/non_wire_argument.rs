use remote_core::{remote, Error};

pub struct Config {
    pub verbose: bool,
}

#[remote]
pub trait Settings {
    async fn apply(&self, config: Config) -> Result<(), Error>;
}

fn main() {}
