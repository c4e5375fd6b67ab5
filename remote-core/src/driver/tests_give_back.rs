//! A proxy held while the peer keeps sending the same reference gives its
//! receipts back on the wire before the exporter's count of sends could
//! overflow (`proto::GIVE_BACK_AT`, lowered here), and the object is still
//! freed when the proxy goes.

use std::sync::Arc;
use std::time::Duration;

use crate::{Connection, ConnectionBuilder, Error, Remote};

#[crate::remote]
trait Counter: Send + Sync {
    async fn get(&self) -> Result<u32, Error>;
}

#[crate::remote]
trait Hub: Send + Sync {
    /// The same counter each time.
    async fn counter(&self) -> Result<Remote<dyn Counter>, Error>;
}

struct One;

#[crate::remote]
impl Counter for One {
    async fn get(&self) -> Result<u32, Error> {
        Ok(7)
    }
}

struct HubImpl(Remote<dyn Counter>);

#[crate::remote]
impl Hub for HubImpl {
    async fn counter(&self) -> Result<Remote<dyn Counter>, Error> {
        Ok(self.0.clone())
    }
}

/// Waits (at most 60 s) until `f` holds.
async fn until(mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f() && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    f()
}

#[tokio::test]
async fn a_held_proxy_gives_receipts_back_and_its_object_is_freed_when_it_goes() {
    let hub = HubImpl(Remote::new(Arc::new(One) as Arc<dyn Counter>));
    let (server, client) = Connection::pair(
        ConnectionBuilder::new().serve(Remote::new(Arc::new(hub) as Arc<dyn Hub>)),
        ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    client.shared.core().give_back_at(8);
    let root = client.root::<dyn Hub>();
    let first = root.counter().await.unwrap();
    // Exports are numbered from 1: the counter is the only one.
    let id = crate::proto::ObjectId(1);
    assert_eq!(server.shared.core().exports().len(), 1);
    let sends = || server.shared.core().exports().count(id);
    for _ in 0..100 {
        let again = root.counter().await.unwrap();
        assert_eq!(again.get().await.unwrap(), 7);
        // Each reply's receipt is counted on the held import; at 8 the
        // client gives 7 back.
        assert!(sends() <= 8 + 1, "{} sends counted", sends());
    }
    assert!(until(|| sends() < 8).await, "{} sends counted", sends());
    assert_eq!(first.get().await.unwrap(), 7, "the proxy still works");
    drop(first);
    assert!(
        until(|| server.shared.core().exports().is_empty()).await,
        "the object was not freed: {} sends counted",
        sends()
    );
}
