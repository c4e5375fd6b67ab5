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

// `#[remote]` impls whose self type is foreign (a blanket impl over `Arc`,
// and a std type) or generic: the `RemoteImpl` marker they emit (issue 12
// friction 5) must pass the orphan check and keep parameters constrained.
#[remote]
impl<T: Log<u8>> Log<u8> for Arc<T> {
    fn all(&self) -> remote_core::Result<Vec<u8>> {
        (**self).all()
    }
}

#[remote]
impl Log<String> for Vec<String> {
    fn all(&self) -> remote_core::Result<Vec<String>> {
        Ok(self.clone())
    }
}

pub struct MemStore<K, V>(Mutex<Vec<(K, V)>>);

#[remote]
impl<K: Wire + PartialEq + Send + Sync, V: Wire + Clone + Send + Sync> Store<K, V>
    for MemStore<K, V>
{
    async fn put(&self, key: K, value: V) -> Result<(), Error> {
        self.0.lock().unwrap().push((key, value));
        Ok(())
    }
    async fn get(&self, key: K) -> Result<Option<V>, Error> {
        let all = self.0.lock().unwrap();
        Ok(all.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()))
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
    log::<Arc<LogClient<u8>>>();
    fn log_s<T: Log<String>>() {}
    log_s::<Vec<String>>();
    generic::<MemStore<String, u64>>();
}
