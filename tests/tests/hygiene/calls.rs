//! The generated clients and dispatchers, driven over an in-memory
//! connection.

use std::sync::Arc;

use remote_core::{Connection, ConnectionBuilder, Error, Interface, Remote};

use crate::hostile::{
    Counter, CounterClient, CounterRemote, Impl, MemStore, Meters, Nothing, Point, Shape,
    ShapeError, Shapes, ShapesClient, Store, Tagged,
};
use crate::renamed::{Note, NoteBook, Notes};

/// A client connection whose peer serves `root`.
async fn serve<T: ?Sized + Interface>(root: Remote<T>, server: ConnectionBuilder) -> Connection {
    let (client, server) = Connection::pair(ConnectionBuilder::new(), server.serve(root))
        .await
        .expect("in-memory pair");
    // The server side lives as long as its driver task; keep it reachable.
    std::mem::forget(server);
    client
}

fn shapes() -> Remote<dyn Shapes> {
    Remote::new(Arc::new(Impl))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_methods_and_typed_errors_cross() {
    let conn = serve(shapes(), ConnectionBuilder::new()).await;
    let s = conn.root::<dyn Shapes>();
    assert!(s.is_remote());
    let circle = Shape::Circle(Point { x: 1, y: 2 }, 2.0);
    assert_eq!(s.area(circle).await, Ok(12.0));
    let rect = Shape::Rect {
        corner: Point { x: 0, y: 0 },
        extent: (3, 4),
    };
    assert_eq!(s.area(rect).await, Ok(12.0));
    let big = Shape::Rect {
        corner: Point { x: 0, y: 0 },
        extent: (101, 1),
    };
    assert_eq!(s.area(big).await, Err(ShapeError::TooBig(101)));
    assert_eq!(s.area(Shape::Empty).await, Ok(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_methods_run_on_the_served_object() {
    let conn = serve(shapes(), ConnectionBuilder::new()).await;
    let s = conn.root::<dyn Shapes>();
    assert_eq!(s.twice(21).await, Ok(42));
    assert_eq!(s.twice(2000).await, Err(ShapeError::TooBig(2000)));
    // The same default body runs locally too.
    let local: Arc<dyn Shapes> = Arc::new(Impl);
    assert_eq!(local.twice(5).await, Ok(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_methods_work_off_the_runtime_and_refuse_on_it() {
    let conn = serve(shapes(), ConnectionBuilder::new()).await;
    let s = conn.root::<dyn Shapes>();
    let on_runtime = s.zero();
    assert!(
        matches!(on_runtime, Err(Error::BlockingInAsync)),
        "{on_runtime:?}"
    );
    let s2 = s.clone();
    // A thread of its own, outside the runtime, may block.
    let (echo, zero) = std::thread::spawn(move || {
        (
            s2.echo(Point { x: 7, y: -7 }, Meters(1.5), Nothing),
            s2.zero(),
        )
    })
    .join()
    .unwrap();
    assert_eq!(echo.unwrap(), (Point { x: 7, y: -7 }, Meters(1.5), Nothing));
    assert_eq!(zero.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requires_auth_is_enforced_by_the_dispatcher() {
    let conn = serve(shapes(), ConnectionBuilder::new()).await;
    let s = conn.root::<dyn Shapes>();
    let t = Tagged {
        tag: "t".into(),
        value: 1u8,
        token: Some(9),
    };
    let err = s.tagged(t).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("requires an authenticated connection"),
        "{err}"
    );

    // Authenticated: the renamed wire name `tag` reaches the method.
    let key = remote_core::auth::Key::new(b"secret");
    let server = ConnectionBuilder::new().shared_secret(key.clone());
    let (client, server) = Connection::pair(
        ConnectionBuilder::new().credentials("user", key),
        server.serve(shapes()),
    )
    .await
    .unwrap();
    let s = client.root::<dyn Shapes>();
    let t = Tagged {
        tag: "t".into(),
        value: 1u8,
        token: Some(9),
    };
    assert_eq!(
        s.tagged(t).await.unwrap(),
        Tagged {
            tag: "t".into(),
            value: 1,
            token: Some(9)
        }
    );
    // The Rust name is not a wire name.
    let raw: Result<u8, Error> = s
        .handle()
        .unwrap()
        .call(
            "tagged",
            (Tagged {
                tag: String::new(),
                value: 0u8,
                token: None,
            },),
        )
        .await;
    assert!(raw
        .unwrap_err()
        .to_string()
        .contains("no method \"tagged\""));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_interfaces_cross_with_their_type_argument() {
    let store: Remote<dyn Store<Point>> = Remote::new(Arc::new(MemStore::<Point> {
        items: std::sync::Mutex::new(Vec::new()),
    }));
    let conn = serve(store, ConnectionBuilder::new()).await;
    let s = conn.root::<dyn Store<Point>>();
    assert_eq!(s.put(Point { x: 1, y: 1 }).await.unwrap(), 0);
    assert_eq!(s.put(Point { x: 2, y: 2 }).await.unwrap(), 1);
    assert_eq!(s.get(1).await.unwrap(), Some(Point { x: 2, y: 2 }));
    assert_eq!(s.get(5).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherent_impls_get_an_interface_and_a_client() {
    let counter = Arc::new(Counter::new());
    // The inherent methods stay callable as written.
    assert_eq!(counter.add(2).await.unwrap(), 2);
    let conn = serve(
        Remote::<dyn CounterRemote>::new(counter.clone()),
        ConnectionBuilder::new(),
    )
    .await;
    let c = conn.root::<dyn CounterRemote>();
    assert_eq!(c.add(3).await.unwrap(), 5);
    let c2 = c.clone();
    let get =
        tokio::task::spawn_blocking(move || remote_core::blocking::allow_blocking(|| c2.get()));
    assert_eq!(get.await.unwrap().unwrap(), 5);
    // `#[remote(skip)]` keeps `reset` local: the peer does not know it.
    let raw: Result<u64, Error> = c.handle().unwrap().call("reset", ()).await;
    assert!(raw.unwrap_err().to_string().contains("no method \"reset\""));
    assert_eq!(counter.reset(), 5);
    // A client built from a handle is the same proxy type.
    let client = CounterClient::from_handle(c.handle().unwrap().clone());
    assert_eq!(client.add(1).await.unwrap(), 1);
    assert!(format!("{client:?}").starts_with("CounterClient"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_crate_path_round_trips() {
    let conn = serve(
        Remote::<dyn Notes>::new(Arc::new(NoteBook::default())),
        ConnectionBuilder::new(),
    )
    .await;
    let n = conn.root::<dyn Notes>();
    assert_eq!(n.add(Note { text: "a".into() }).await.unwrap(), 1);
    assert_eq!(n.add(Note { text: "b".into() }).await.unwrap(), 2);
}

#[test]
fn local_objects_round_trip_through_their_dispatcher() {
    let obj: Arc<dyn Shapes> = Arc::new(Impl);
    let d = <dyn Shapes as Interface>::into_dispatch(obj.clone());
    assert_eq!(d.interface_name(), "Shapes");
    let back = <dyn Shapes as Interface>::from_dispatch(&d).expect("our own dispatcher");
    assert!(Arc::ptr_eq(&obj, &back));
    assert!(<dyn Shapes as Interface>::handle(&*obj).is_none());
    // Another interface's dispatcher is not ours.
    let notes = <dyn Notes as Interface>::into_dispatch(Arc::new(NoteBook::default()));
    assert!(<dyn Shapes as Interface>::from_dispatch(&notes).is_none());
    assert_eq!(<dyn Store<u8> as Interface>::name(), "Store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_is_clone_debug_send_sync() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    assert_traits::<ShapesClient>();
    let conn = serve(shapes(), ConnectionBuilder::new()).await;
    let handle = conn.root::<dyn Shapes>().handle().unwrap().clone();
    let client = ShapesClient::from_handle(handle);
    let copy = client.clone();
    assert_eq!(copy.twice(4).await, Ok(8));
    let dbg = format!("{client:?}");
    assert!(dbg.starts_with("ShapesClient { handle: "), "{dbg}");
}
