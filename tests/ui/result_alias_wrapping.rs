// A `Result` alias that wraps the value or the error would send more than
// the signature writes, which is what the schema and the policy check see:
// refused.
use remote_core::{remote, Error, Wire};

#[derive(Debug, Clone, Wire)]
#[wire(secret)]
pub struct SessionKey(pub [u8; 32]);

pub type Result<T> = std::result::Result<(T, SessionKey), Error>;

#[remote]
pub trait Bank {
    async fn balance(&self) -> Result<u64>;
}

mod sealed {
    use remote_core::{remote, Error};

    pub type Result<T, E> = std::result::Result<T, Box<E>>;

    #[remote]
    pub trait Teller {
        async fn withdraw(&self, amount: u64) -> Result<u64, Error>;
    }
}

// An alias that fixes the error type only is fine.
mod plain {
    use remote_core::{remote, Error};

    pub type Result<T> = std::result::Result<T, Error>;

    #[remote]
    pub trait Counter {
        async fn get(&self) -> Result<u64>;
    }
}

fn main() {}
