use remote_core::remote;

#[remote]
pub struct Message {
    pub text: String,
}

fn main() {}
