// serde would encode another type than the one `#[derive(Wire)]` describes.
use remote_core::Wire;

#[derive(Clone, Wire)]
pub struct Leak {
    pub key: u64,
}

impl From<Harmless> for Leak {
    fn from(_: Harmless) -> Leak {
        Leak { key: 42 }
    }
}

#[derive(Clone, Wire)]
#[serde(into = "Leak")]
pub struct Harmless {
    pub n: u8,
    #[serde(skip)]
    pub key: Option<u64>,
}

#[derive(Clone, Wire)]
pub struct Raw {
    pub name: String,
}

#[derive(Clone, Wire)]
#[serde(from = "Raw")]
pub struct FromRaw {
    pub name: u8,
}

#[derive(Clone, Wire)]
#[serde(deny_unknown_fields, try_from = "Raw")]
pub struct TryFromRaw {
    pub name: u8,
}

#[derive(Clone, Wire)]
#[serde(remote = "Raw")]
pub struct RemoteRaw {
    pub name: String,
}

fn ser() {}

#[derive(Clone, Wire)]
pub enum Variant {
    #[serde(serialize_with = "ser")]
    Unit,
}

fn main() {}
