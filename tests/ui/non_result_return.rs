use remote_core::remote;

#[remote]
pub trait Counter {
    async fn get(&self) -> u64;
    fn reset(&self);
}

fn main() {}
