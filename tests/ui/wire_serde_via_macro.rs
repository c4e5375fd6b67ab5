// The same serde options, written through a `macro_rules!` fragment
// (`#[serde($m)]`, which arrives in an invisible group that serde reads
// through): still refused.
use remote_core::Wire;

#[derive(Clone, Wire)]
pub struct Leak {
    pub key: u64,
}

impl From<Decoy> for Leak {
    fn from(_: Decoy) -> Leak {
        Leak { key: 42 }
    }
}

macro_rules! container {
    ($m:meta) => {
        #[derive(Clone, Wire)]
        #[serde($m)]
        pub struct Decoy(pub u64);
    };
}

container!(into = "Leak");

fn ser() {}

macro_rules! variant {
    ($m:meta) => {
        #[derive(Clone, Wire)]
        pub enum Choice {
            #[serde($m)]
            A(u64),
        }
    };
}

variant!(serialize_with = "ser");

fn main() {}
