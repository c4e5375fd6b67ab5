use remote_core::Wire;

pub struct Connection;

#[derive(Wire)]
pub struct Session {
    pub id: u64,
    pub conn: Connection,
}

fn main() {}
