use remote_core::{remote, Error};

// Issue 12 friction 5: `#[remote]` forgotten on the impl block.

#[remote]
pub trait Counter {
    async fn increment(&self) -> Result<u64, Error>;
}

pub struct Local;

impl Counter for Local {
    async fn increment(&self) -> Result<u64, Error> {
        Ok(1)
    }
}

// A trait with only blocking methods compiled before, silently skipping the
// implementation's registration for the policy check.
#[remote]
pub trait Clock {
    fn now(&self) -> Result<u64, Error>;
}

pub struct Wall;

impl Clock for Wall {
    fn now(&self) -> Result<u64, Error> {
        Ok(0)
    }
}

fn main() {}
