//! Another client flooding writes to a shared object: every write is
//! pushed to this client as an invalidation (PROTOCOL.md §3.9), and what
//! this client's cache keeps per invalidation is nothing (the entries'
//! version moves on), so its memory does not grow with the other client's
//! writes and its reads keep working. One test per binary:
//! [`counting::live`] counts the whole process.

#[path = "support/counting.rs"]
mod counting;

use std::sync::{Arc, Mutex};

use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};

/// A shared document.
#[remote]
pub trait Doc {
    /// The text.
    #[remote(cache(ttl = "1h"))]
    async fn text(&self) -> Result<String, Error>;
    /// Replaces the text.
    #[remote(invalidates(text))]
    async fn write(&self, text: String) -> Result<(), Error>;
}

#[derive(Default)]
struct Page(Mutex<String>);

#[remote]
impl Doc for Page {
    async fn text(&self) -> Result<String, Error> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn write(&self, text: String) -> Result<(), Error> {
        *self.0.lock().unwrap() = text;
        Ok(())
    }
}

async fn client(root: &Arc<dyn Doc>) -> (Remote<dyn Doc>, Connection, Connection) {
    let (c, s) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(Remote::new(root.clone())),
    )
    .await
    .unwrap();
    (c.root::<dyn Doc>(), c, s)
}

#[tokio::test]
async fn another_clients_flood_of_writes_does_not_grow_this_clients_cache() {
    let root: Arc<dyn Doc> = Arc::new(Page::default());
    let (attacker, _ac, _as) = client(&root).await;
    let (reader, reader_conn, _rs) = client(&root).await;
    // The reader caches the text: every write is pushed to it.
    assert_eq!(reader.text().await.unwrap(), "");
    for i in 0..100 {
        attacker.write(i.to_string()).await.unwrap();
    }
    let before = counting::live();
    const WRITES: u64 = 20_000;
    for i in 0..WRITES {
        attacker.write(i.to_string()).await.unwrap();
    }
    let grown = counting::live() - before;
    // Before the fix each pushed invalidation left a moka predicate in the
    // reader's cache until a scan of the whole cache ran: ~5 MB here.
    assert!(
        grown < 256 << 10,
        "{grown} bytes held after {WRITES} pushed invalidations"
    );
    let pushed = reader_conn.cache_stats().invalidations;
    assert!(pushed >= WRITES, "every write was pushed: {pushed}");
    // The reader sees the last write, then caches it again.
    let last = (WRITES - 1).to_string();
    assert_eq!(reader.text().await.unwrap(), last);
    assert_eq!(reader.text().await.unwrap(), last);
    assert!(reader_conn.cache_stats().hits >= 1);
}
