//! What a caller sees when a call fails: the advice for a blocking call in
//! the wrong place, a toolkit error kept whole inside an application error,
//! and the close reason on every call after a connection closed.

#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use remote_core::{remote, Connection, ConnectionBuilder, Error, Limits, Remote, Wire};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Wire, thiserror::Error)]
pub enum ShopError {
    #[error("sold out")]
    SoldOut,
    #[error(transparent)]
    Remote(#[from] Error),
}

#[remote]
pub trait Shop {
    /// Fails with the given toolkit error wrapped in `ShopError::Remote`
    /// (`limit`), or `SoldOut` (anything else).
    async fn buy(&self, what: String) -> Result<u64, ShopError>;
    /// Sleeps `ms` milliseconds.
    async fn nap(&self, ms: u64) -> Result<(), ShopError>;
    /// A blocking method.
    fn add(&self, a: u32, b: u32) -> Result<u32, Error>;
}

#[derive(Debug)]
pub struct Store;

#[remote]
impl Shop for Store {
    async fn buy(&self, what: String) -> Result<u64, ShopError> {
        if what == "limit" {
            return Err(ShopError::Remote(Error::LimitExceeded {
                limit: "max_widgets",
                value: 3,
                detail: "three widgets per order".into(),
            }));
        }
        Err(ShopError::SoldOut)
    }
    async fn nap(&self, ms: u64) -> Result<(), ShopError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
    fn add(&self, a: u32, b: u32) -> Result<u32, Error> {
        Ok(a + b)
    }
}

async fn pair(limits: Limits) -> (Connection, Connection) {
    let root: Remote<dyn Shop> = Remote::new(Arc::new(Store));
    Connection::pair(
        ConnectionBuilder::new().limits(limits.clone()),
        ConnectionBuilder::new().limits(limits).serve(root),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_call_on_the_runtime_thread_says_what_works() {
    let (client, _server) = pair(Limits::default()).await;
    let shop = client.root::<dyn Shop>();

    let err = shop.add(1, 2).unwrap_err();
    assert!(matches!(err, Error::BlockingInAsync), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(".await"), "{text}");
    assert!(
        text.contains("remote_core::blocking::spawn_blocking(move || ..)"),
        "{text}"
    );
    assert!(
        text.contains("tokio's spawn_blocking alone is not enough"),
        "{text}"
    );

    // What the message advises works.
    let s = shop.clone();
    let sum = remote_core::blocking::spawn_blocking(move || s.add(20, 22))
        .await
        .unwrap();
    assert_eq!(sum.unwrap(), 42);
    // And what it warns about is refused, with the same advice.
    let s = shop.clone();
    let plain = tokio::task::spawn_blocking(move || s.add(1, 1))
        .await
        .unwrap();
    assert!(matches!(plain, Err(Error::BlockingInAsync)), "{plain:?}");
}

#[tokio::test]
async fn an_application_error_keeps_the_toolkit_error_whole() {
    let (client, server) = pair(Limits::default()).await;
    let shop = client.root::<dyn Shop>();

    // The method's own error comes back typed.
    assert!(matches!(
        shop.buy("x".into()).await,
        Err(ShopError::SoldOut)
    ));

    // A toolkit error the server wrapped crosses as itself, marked remote.
    match shop.buy("limit".into()).await {
        Err(ShopError::Remote(e)) => {
            assert!(e.is_remote(), "{e:?}");
            assert_eq!(e.remote_kind(), Some("limit_exceeded"));
            assert!(e.is_limit());
            assert_eq!(e.limit_name(), Some("max_widgets"));
            assert!(!e.is_connection_lost(), "the server's error, not ours");
            assert!(e.to_string().contains("max_widgets = 3"), "{e}");
        }
        other => panic!("expected ShopError::Remote, got {other:?}"),
    }

    // A deadline is a predicate, not text.
    let r = remote_core::with_timeout(Duration::from_millis(50), shop.nap(60_000)).await;
    match r {
        Err(ShopError::Remote(e)) => {
            assert!(e.is_deadline(), "{e:?}");
            assert!(!e.is_connection_lost() && !e.is_remote());
        }
        other => panic!("expected a deadline, got {other:?}"),
    }

    // Our own lost connection is told apart from everything else.
    server.close();
    client.closed().await;
    match shop.buy("x".into()).await {
        Err(ShopError::Remote(e)) => {
            assert!(e.is_connection_lost(), "{e:?}");
            assert!(!e.is_remote() && !e.is_limit() && !e.is_deadline());
            assert_eq!(e.kind(), "connection_lost");
        }
        other => panic!("expected a lost connection, got {other:?}"),
    }
}

#[test]
fn error_crosses_by_value_as_its_kind() {
    let bytes = remote_core::__private::encode_value(&Error::Cancelled).unwrap();
    let back: Error = remote_core::__private::decode_value(&bytes).unwrap();
    assert!(back.is_cancelled(), "{back:?}");
    assert_eq!(back.remote_kind(), Some("cancelled"));
    assert_eq!(back.remote().unwrap().message, "call cancelled");
}

#[tokio::test]
async fn every_call_after_an_idle_close_names_the_idle_timeout() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (client, _server) = pair(limits).await;
    let shop = client.root::<dyn Shop>();
    // Nothing happens: the connection closes for idleness.
    let why = tokio::time::timeout(Duration::from_secs(60), client.closed())
        .await
        .expect("the idle connection closes");
    assert!(why.to_string().contains("idle_timeout"), "{why}");
    for _ in 0..2 {
        match shop.buy("x".into()).await {
            Err(ShopError::Remote(e)) => {
                assert!(e.is_connection_lost(), "{e:?}");
                assert!(
                    e.to_string()
                        .contains("no traffic for idle_timeout = 200ms"),
                    "{e}"
                );
            }
            other => panic!("expected a lost connection, got {other:?}"),
        }
    }
}

/// Same method name as `Shop::buy`, other argument types.
#[remote]
pub trait Vending {
    async fn buy(&self, slot: u64, coins: Vec<u8>) -> Result<u64, Error>;
}

#[tokio::test]
async fn a_proxy_for_the_wrong_interface_is_told_the_servers_interface() {
    let (client, _server) = pair(Limits::default()).await;
    // The server's root is a `Shop`; take it for a `Vending`: refused here
    // from the server's announcement (PROTOCOL.md §6.2), nothing sent.
    let wrong = client.root::<dyn Vending>();
    let err = wrong.buy(1, vec![2]).await.unwrap_err();
    assert!(err.is_wrong_interface(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("the server's root is `Shop`, not `Vending`"),
        "{text}"
    );
}

/// A caller that does not check the announcement (another runtime, an
/// older build) still learns the server's interface from the error.
#[tokio::test]
async fn an_unchecked_caller_learns_the_servers_interface() {
    let (ours, mut theirs) = tokio::io::duplex(64 << 10);
    let (r, w) = tokio::io::split(ours);
    let root: Remote<dyn Shop> = Remote::new(Arc::new(Store));
    let serving = ConnectionBuilder::new().serve(root).over(r, w, "raw");
    let caller = async {
        theirs.write_all(&raw::hello(vec![])).await.unwrap();
        // `Vending::buy(1, [2])`: the server's `buy` takes one string.
        let args = [0x92, 0x01, 0x91, 0x02];
        let call = raw::call(0, 0, "buy", 30_000, &args);
        theirs.write_all(&call).await.unwrap();
        raw::next_error(&mut theirs).await
    };
    let (server, (id, kind, text)) = tokio::join!(serving, caller);
    let _server = server.unwrap();
    assert_eq!((id, kind.as_str()), (0, "bad_arguments"));
    assert!(
        text.contains("for method \"buy\" of interface `Shop`"),
        "{text}"
    );
}
