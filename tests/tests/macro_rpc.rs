//! The macro's generated code over real connections (in-memory and TCP):
//! capabilities in every position, three-party hand-off, identity of handed
//! back objects, generics, defaults, blocking methods, inherent impls,
//! typed errors and streams.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use remote_core::stream::RemoteStream;
use remote_core::{
    remote, Connection, ConnectionBuilder, Error, Remote, RemoteError, Server, Wire,
};

#[remote]
pub trait Greeter {
    async fn greet(&self, name: String) -> Result<String, Error>;
    /// A default method: the served object's body runs.
    async fn greet_twice(&self, name: String) -> Result<String, Error> {
        let one = self.greet(name.clone()).await?;
        Ok(format!("{one} {one}"))
    }
}

/// Capabilities nested in a struct, a Vec and an Option.
#[derive(Wire, Clone, Debug)]
pub struct Team {
    pub lead: Remote<dyn Greeter>,
    pub members: Vec<Remote<dyn Greeter>>,
    pub deputy: Option<Remote<dyn Greeter>>,
}

#[derive(Debug, Clone, PartialEq, Wire, thiserror::Error)]
pub enum HubError {
    #[error("nobody registered under {0}")]
    Missing(String),
    #[error(transparent)]
    Remote(RemoteError),
}

impl From<Error> for HubError {
    fn from(e: Error) -> Self {
        HubError::Remote(e.into())
    }
}

#[remote]
pub trait Hub {
    async fn register(&self, name: String, g: Remote<dyn Greeter>) -> Result<(), HubError>;
    async fn lookup(&self, name: String) -> Result<Remote<dyn Greeter>, HubError>;
    async fn echo_team(&self, team: Team) -> Result<Team, Error>;
    async fn greet_team(&self, team: Team, name: String) -> Result<Vec<String>, Error>;
    async fn echo_greeter(&self, g: Remote<dyn Greeter>) -> Result<Remote<dyn Greeter>, Error>;
    async fn countdown(&self, from: u32) -> Result<RemoteStream<u32>, Error>;
    fn blocking_sum(&self, xs: Vec<u64>) -> Result<u64, Error>;
}

#[remote]
pub trait Store<T: Wire + Clone + Sync> {
    async fn put(&self, v: T) -> Result<u64, Error>;
    async fn all(&self) -> Result<Vec<T>, Error>;
}

#[derive(Debug)]
pub struct Named(pub String, pub Arc<AtomicU64>);

#[remote]
impl Greeter for Named {
    async fn greet(&self, name: String) -> Result<String, Error> {
        self.1.fetch_add(1, SeqCst);
        Ok(format!("{} greets {name}", self.0))
    }
}

#[derive(Default, Debug)]
pub struct HubImpl {
    names: Mutex<Vec<(String, Remote<dyn Greeter>)>>,
}

#[remote]
impl Hub for HubImpl {
    async fn register(&self, name: String, g: Remote<dyn Greeter>) -> Result<(), HubError> {
        self.names.lock().unwrap().push((name, g));
        Ok(())
    }
    async fn lookup(&self, name: String) -> Result<Remote<dyn Greeter>, HubError> {
        let names = self.names.lock().unwrap();
        names
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, g)| g.clone())
            .ok_or(HubError::Missing(name))
    }
    async fn echo_team(&self, team: Team) -> Result<Team, Error> {
        Ok(team)
    }
    async fn greet_team(&self, team: Team, name: String) -> Result<Vec<String>, Error> {
        let mut out = vec![team.lead.greet(name.clone()).await?];
        for m in &team.members {
            out.push(m.greet(name.clone()).await?);
        }
        if let Some(d) = &team.deputy {
            out.push(d.greet_twice(name).await?);
        }
        Ok(out)
    }
    async fn echo_greeter(&self, g: Remote<dyn Greeter>) -> Result<Remote<dyn Greeter>, Error> {
        Ok(g)
    }
    async fn countdown(&self, from: u32) -> Result<RemoteStream<u32>, Error> {
        Ok(RemoteStream::from_items((0..=from).rev()))
    }
    fn blocking_sum(&self, xs: Vec<u64>) -> Result<u64, Error> {
        Ok(xs.iter().sum())
    }
}

#[derive(Default, Debug)]
pub struct MemStore<T>(Mutex<Vec<T>>);

#[remote]
impl<T: Wire + Clone + Sync> Store<T> for MemStore<T> {
    async fn put(&self, v: T) -> Result<u64, Error> {
        let mut s = self.0.lock().unwrap();
        s.push(v);
        Ok(s.len() as u64)
    }
    async fn all(&self) -> Result<Vec<T>, Error> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// Prototyping without a trait.
#[derive(Default, Debug)]
pub struct Counter {
    n: AtomicU64,
}

#[remote]
impl Counter {
    pub async fn bump(&self, by: u64) -> Result<u64, Error> {
        Ok(self.n.fetch_add(by, SeqCst) + by + self.offset())
    }

    /// Private: stays local (it would not even be a valid remote method).
    fn offset(&self) -> u64 {
        0
    }
}

#[test]
fn inherent_impls_expose_only_public_methods() {
    let schema = remote_core::schema::collect();
    let iface = schema
        .interfaces
        .values()
        .find(|i| i.name == "CounterRemote")
        .expect("registered");
    let names: Vec<&str> = iface.methods.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["bump"]);
}

fn greeter(name: &str) -> (Remote<dyn Greeter>, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    (
        Remote::new(Arc::new(Named(name.into(), calls.clone())) as Arc<dyn Greeter>),
        calls,
    )
}

/// Two clients of one hub, over TCP or in memory (each client its own pair).
async fn two_clients(
    tcp: bool,
) -> (
    Remote<dyn Hub>,
    Remote<dyn Hub>,
    Vec<Connection>,
    Option<remote_core::ServerHandle>,
) {
    let hub: Remote<dyn Hub> = Remote::new(Arc::new(HubImpl::default()));
    if tcp {
        let h = hub.clone();
        let server = Server::bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(move |_| h.clone());
        let a = Connection::connect(server.local_addr()).await.unwrap();
        let b = Connection::connect(server.local_addr()).await.unwrap();
        (a.root(), b.root(), vec![a, b], Some(server))
    } else {
        let (_sa, a) = Connection::pair(
            ConnectionBuilder::new().serve(hub.clone()),
            ConnectionBuilder::new(),
        )
        .await
        .unwrap();
        let (_sb, b) = Connection::pair(
            ConnectionBuilder::new().serve(hub),
            ConnectionBuilder::new(),
        )
        .await
        .unwrap();
        (a.root(), b.root(), vec![a, b, _sa, _sb], None)
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_passes_client_to_server_to_another_client() {
    for tcp in [false, true] {
        bounded(async {
            let (a, b, _conns, _server) = two_clients(tcp).await;
            let (alice, calls) = greeter("alice");
            a.register("alice".into(), alice).await.unwrap();
            // B gets a handle to an object living in A's process, via the hub.
            let found = b.lookup("alice".into()).await.unwrap();
            assert!(found.is_remote());
            assert_eq!(found.greet("bob".into()).await.unwrap(), "alice greets bob");
            assert_eq!(calls.load(SeqCst), 1, "the call ran in A");
            assert_eq!(
                b.lookup("zed".into()).await.unwrap_err(),
                HubError::Missing("zed".into())
            );
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_nested_in_structs_vecs_and_options_cross_both_ways() {
    for tcp in [false, true] {
        bounded(async {
            let (a, _b, _conns, _server) = two_clients(tcp).await;
            let (lead, lead_calls) = greeter("lead");
            let (m1, _) = greeter("m1");
            let (m2, _) = greeter("m2");
            let (dep, _) = greeter("dep");
            let team = Team {
                lead: lead.clone(),
                members: vec![m1, m2],
                deputy: Some(dep),
            };
            let got = a.greet_team(team.clone(), "x".into()).await.unwrap();
            assert_eq!(
                got,
                [
                    "lead greets x",
                    "m1 greets x",
                    "m2 greets x",
                    "dep greets x dep greets x"
                ]
            );
            assert_eq!(lead_calls.load(SeqCst), 1);
            // Sent out and back: every handle resolves to our original object.
            let back = a.echo_team(team).await.unwrap();
            assert!(Arc::ptr_eq(back.lead.as_arc(), lead.as_arc()));
            assert!(!back.members[0].is_remote() && !back.deputy.as_ref().unwrap().is_remote());
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_object_handed_back_is_the_original_not_a_proxy() {
    for tcp in [false, true] {
        bounded(async {
            let (a, _b, _conns, _server) = two_clients(tcp).await;
            let (g, calls) = greeter("me");
            let back = a.echo_greeter(g.clone()).await.unwrap();
            assert!(!back.is_remote());
            assert!(Arc::ptr_eq(back.as_arc(), g.as_arc()));
            back.greet("local".into()).await.unwrap();
            assert_eq!(
                calls.load(SeqCst),
                1,
                "called locally, no round trip needed"
            );
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_blocking_methods_and_typed_errors() {
    for tcp in [false, true] {
        bounded(async {
            let (a, _b, _conns, _server) = two_clients(tcp).await;
            let items: Vec<u32> = a
                .countdown(3)
                .await
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
                .await;
            assert_eq!(items, [3, 2, 1, 0]);
            let a2 = a.clone();
            let sum = std::thread::spawn(move || a2.blocking_sum(vec![1, 2, 3]))
                .join()
                .unwrap();
            assert_eq!(sum.unwrap(), 6);
            assert!(matches!(
                a.blocking_sum(vec![]),
                Err(Error::BlockingInAsync)
            ));
        })
        .await;
    }
}

#[tokio::test]
async fn generic_interfaces_and_inherent_impls_cross() {
    let store: Remote<dyn Store<(u8, String)>> = Remote::new(Arc::new(MemStore::default()));
    let (_s, c) = Connection::pair(
        ConnectionBuilder::new().serve(store),
        ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let s = c.root::<dyn Store<(u8, String)>>();
    assert_eq!(s.put((1, "a".into())).await.unwrap(), 1);
    assert_eq!(s.all().await.unwrap(), vec![(1, "a".to_owned())]);

    let counter: Remote<dyn CounterRemote> = Remote::new(Arc::new(Counter::default()));
    let (_s, c) = Connection::pair(
        ConnectionBuilder::new().serve(counter),
        ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let k = c.root::<dyn CounterRemote>();
    assert_eq!(k.bump(2).await.unwrap(), 2);
    assert_eq!(k.bump(3).await.unwrap(), 5);
}

#[tokio::test]
async fn a_dropped_proxy_releases_the_object_in_its_owner() {
    let (a, _b, conns, _server) = two_clients(false).await;
    let (g, _) = greeter("temp");
    // The hub receives a proxy, returns it (ours again) and drops its copy.
    let back = a.echo_greeter(g.clone()).await.unwrap();
    drop(back);
    let mut released = false;
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < end {
        if conns[0].exported_objects() == 0 && Arc::strong_count(g.as_arc()) == 1 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        released,
        "the export entry was released: only our own handle remains"
    );
    // Registered with the hub, it stays exported while the hub holds it.
    a.register("temp".into(), g.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(conns[0].exported_objects(), 1);
    assert_eq!(
        Arc::strong_count(g.as_arc()),
        2,
        "ours and the export table's dispatcher"
    );
}
