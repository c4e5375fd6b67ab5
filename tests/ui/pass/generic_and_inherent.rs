//! A generic trait and an inherent impl exposed with `#[remote]`.
use std::sync::{Arc, Mutex};

use remote_core::{remote, Error, Remote, Wire};

#[remote]
pub trait Store<K, V>
where
    K: Wire,
    V: Wire,
{
    async fn put(&self, key: K, value: V) -> Result<(), Error>;
    async fn get(&self, key: K) -> Result<Option<V>, Error>;
}

#[remote]
pub trait Log<T: Wire + Clone> {
    fn all(&self) -> remote_core::Result<Vec<T>>;
}

pub struct Room {
    lines: Mutex<Vec<String>>,
}

#[remote]
impl Room {
    pub fn new() -> Self {
        Room { lines: Mutex::new(Vec::new()) }
    }
    pub async fn say(&self, mut line: String) -> Result<usize, Error> {
        line.push('!');
        let mut l = self.lines.lock().unwrap();
        l.push(line);
        Ok(l.len())
    }
    #[remote(skip)]
    pub fn clear(&self) {
        self.lines.lock().unwrap().clear();
    }
}

fn main() {
    let room = Arc::new(Room::new());
    room.clear();
    let _served: Remote<dyn RoomRemote> = Remote::new(room);
    fn client<T: RoomRemote + Clone>() {}
    client::<RoomClient>();
    fn generic<T: Store<String, u64>>() {}
    generic::<StoreClient<String, u64>>();
    fn log<T: Log<u8>>() {}
    log::<LogClient<u8>>();
}
