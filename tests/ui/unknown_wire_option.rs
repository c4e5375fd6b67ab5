use remote_core::Wire;

#[derive(Wire)]
#[wire(private)]
pub struct Login {
    pub user: String,
    #[wire(secrets)]
    pub password: String,
}

fn main() {}
