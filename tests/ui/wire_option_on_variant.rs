// Every `#[wire(...)]` is read: on variants and on skipped fields too.
use remote_core::Wire;

#[derive(Wire)]
pub enum Event {
    #[wire(secert)]
    Rekeyed { key: u64 },
    #[wire(crate = "remote_core")]
    Other(u8),
    #[wire(secret)]
    Empty,
}

#[derive(Wire)]
pub struct Login {
    pub user: String,
    #[serde(skip)]
    #[wire(secert)]
    pub expected: Option<u64>,
}

fn main() {}
