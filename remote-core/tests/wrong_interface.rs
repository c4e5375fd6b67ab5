//! A client asking for the wrong root interface is told so when it gets the
//! root (issue 12, item 4): the server announces its root's name and
//! fingerprint in its hello (PROTOCOL.md §6.2).

#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;

use remote_core::proto::Reader;
use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote, Server};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Greeter {
    async fn greet(&self, name: String) -> Result<String, Error>;
}

#[remote]
pub trait Tally {
    async fn add(&self, n: u64) -> Result<u64, Error>;
}

/// Two builds of one interface: the second added a method.
mod v1 {
    use remote_core::{remote, Error};

    #[remote]
    pub trait Store {
        async fn get(&self, key: String) -> Result<Option<String>, Error>;
    }

    pub(crate) struct Mem;

    #[remote]
    impl Store for Mem {
        async fn get(&self, key: String) -> Result<Option<String>, Error> {
            Ok(Some(format!("value of {key}")))
        }
    }
}

mod v2 {
    use remote_core::{remote, Error};

    #[remote]
    pub trait Store {
        async fn get(&self, key: String) -> Result<Option<String>, Error>;
        async fn delete(&self, key: String) -> Result<bool, Error>;
    }
}

struct Hi;

#[remote]
impl Greeter for Hi {
    async fn greet(&self, name: String) -> Result<String, Error> {
        Ok(format!("hi {name}"))
    }
}

async fn greeter_pair() -> (Connection, Connection) {
    let hi: Remote<dyn Greeter> = Remote::new(Arc::new(Hi));
    Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(hi))
        .await
        .unwrap()
}

#[tokio::test]
async fn asking_for_another_interface_names_both_at_root() {
    let (client, _server) = greeter_pair().await;
    let err = client.try_root::<dyn Tally>().expect_err("refused");
    assert!(matches!(err, Error::WrongInterface(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "wrong interface: the server's root is `Greeter`, not `Tally`"
    );
    // The infallible `root` gives a proxy whose calls fail the same way,
    // without sending anything the server would fail to decode.
    let tally = client.root::<dyn Tally>();
    let err = tally.add(1).await.unwrap_err();
    assert!(err.is_wrong_interface(), "{err:?}");
    assert!(err
        .to_string()
        .contains("the server's root is `Greeter`, not `Tally`"));
    assert!(!client.is_closed());
}

#[tokio::test]
async fn a_server_over_tcp_announces_its_root_too() {
    let server = Server::bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| -> Remote<dyn Greeter> { Remote::new(Arc::new(Hi)) });
    let client = Connection::connect(server.local_addr()).await.unwrap();
    let err = client.try_root::<dyn Tally>().expect_err("refused");
    assert!(err
        .to_string()
        .contains("the server's root is `Greeter`, not `Tally`"));
    let greeter = client.try_root::<dyn Greeter>().unwrap();
    assert_eq!(greeter.greet("bo".into()).await.unwrap(), "hi bo");
}

#[tokio::test]
async fn a_changed_method_set_is_a_fingerprint_mismatch() {
    let store: Remote<dyn v1::Store> = Remote::new(Arc::new(v1::Mem));
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(store),
    )
    .await
    .unwrap();
    let err = client.try_root::<dyn v2::Store>().expect_err("refused");
    let msg = err.to_string();
    assert!(err.is_wrong_interface(), "{err:?}");
    assert!(
        msg.contains("the server's `Store` differs from this client's (interface fingerprint "),
        "{msg}"
    );
    // `root` accepts another version of the same interface (a compatible
    // change must keep working): what both versions share still works, what
    // only the client's has fails at the server.
    let newer = client.root::<dyn v2::Store>();
    assert_eq!(
        newer.get("k".into()).await.unwrap().as_deref(),
        Some("value of k")
    );
    let err = newer.delete("k".into()).await.unwrap_err();
    assert_eq!(err.remote_kind(), Some("unknown_method"), "{err:?}");
    // The same definition is accepted and works.
    let same = client.try_root::<dyn v1::Store>().unwrap();
    assert_eq!(
        same.get("k".into()).await.unwrap().as_deref(),
        Some("value of k")
    );
}

#[tokio::test]
async fn the_same_interface_works() {
    let (client, _server) = greeter_pair().await;
    let greeter = client.try_root::<dyn Greeter>().unwrap();
    assert_eq!(greeter.greet("ann".into()).await.unwrap(), "hi ann");
    assert_eq!(
        client
            .root::<dyn Greeter>()
            .greet("cy".into())
            .await
            .unwrap(),
        "hi cy"
    );
}

/// A peer that announces nothing (an older build, another runtime) is not
/// checked: the call goes out as before.
#[tokio::test]
async fn a_peer_announcing_no_root_is_not_checked() {
    let (ours, mut theirs) = tokio::io::duplex(64 << 10);
    let (r, w) = tokio::io::split(ours);
    let peer = async {
        theirs
            .write_all(&raw::hello(vec!["keepalive"]))
            .await
            .unwrap();
        let f = raw::frame(&mut theirs).await.expect("the client's hello");
        assert_eq!(raw::kind(&f), raw::HELLO);
        theirs
    };
    let (client, mut theirs) = tokio::join!(ConnectionBuilder::new().over(r, w, "raw"), peer);
    let client = client.unwrap();
    let tally = client
        .try_root::<dyn Tally>()
        .expect("nothing to check against");
    let call = tokio::spawn(async move { tally.add(5).await });
    let f = raw::next_of_kind(&mut theirs, raw::CALL).await;
    // [1, id, target, method, timeout_ms, [args]]
    let mut r = Reader::new(&f);
    assert_eq!(r.array_len().unwrap(), 6);
    assert_eq!(r.uint().unwrap(), raw::CALL);
    let _id = r.uint().unwrap();
    assert_eq!(r.uint().unwrap(), 0, "the root object");
    assert_eq!(r.str().unwrap(), "add");
    let _timeout = r.uint().unwrap();
    assert_eq!(r.array_len().unwrap(), 1);
    assert_eq!(r.uint().unwrap(), 5);
    drop(theirs);
    let err = call.await.unwrap().unwrap_err();
    assert!(err.is_connection_lost(), "{err:?}");
}

/// The worked example of PROTOCOL.md §11.
#[remote]
pub trait Calc {
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error>;
}

struct Adder;

#[remote]
impl Calc for Adder {
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error> {
        Ok(a + b)
    }
}

/// The server's hello is byte for byte the one PROTOCOL.md §11 shows, so
/// the fingerprint another runtime computes from §6.2 matches ours.
#[tokio::test]
async fn the_announcement_is_the_documented_bytes() {
    let server = Server::bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| -> Remote<dyn Calc> { Remote::new(Arc::new(Adder)) });
    let mut s = raw::raw_with(&server, vec!["keepalive"]).await;
    let f = raw::frame(&mut s).await.expect("the server's hello");
    let documented = "96 00 a6 72 65 6d 6f 74 65 01 01 94 a9 6b 65 65 70 61 6c 69 76 65 \
                      aa 69 6e 76 61 6c 69 64 61 74 65 a8 70 69 70 65 6c 69 6e 65 \
                      ba 72 6f 6f 74 3a 43 61 6c 63 3a 30 62 63 65 38 64 39 64 66 35 34 62 \
                      32 64 33 66 c0";
    let hex: Vec<String> = f.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex.join(" "),
        documented.split_whitespace().collect::<Vec<_>>().join(" ")
    );
}
