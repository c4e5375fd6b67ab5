//! Values held inline far beyond the size of the type that holds them:
//! serde's `Box<T>` decode keeps the `T` on its own frame before boxing
//! it, and its array and tuple decodes keep each element and then the
//! whole, several times over in a debug build. A `Box` of eight 64 KiB
//! structs, or a `Box<[B64; 16]>` reply, overflowed a 2 MiB tokio worker
//! stack and aborted the process, on honest values too (red-team pass
//! 42): each check counted the box as 8 bytes. `Wire::INLINE` looks
//! through boxes, arrays, tuples and containers' elements, and a call's
//! arguments, a reply and each level of a derived type start with room
//! for it (on a new stack segment if need be).

#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;

use remote_core::{remote, Connection, ConnectionBuilder, Error, Limits, Remote, Server};

/// 64 KiB inline.
#[derive(Debug, Clone, Copy, PartialEq, remote_core::Wire)]
pub struct B64 {
    pub a: [[[u64; 32]; 32]; 8],
}

/// A derived type whose field holds 512 KiB behind a box, recursive.
#[derive(Debug, remote_core::Wire)]
pub struct Holder {
    pub b: Box<[B64; 8]>,
    pub next: Option<Box<Holder>>,
}

type Eight = (B64, B64, B64, B64, B64, B64, B64, B64);

/// An enum whose variants hold much behind boxes, one holding nothing.
#[derive(Debug, remote_core::Wire)]
pub enum Ev {
    Many(Vec<Box<[B64; 8]>>),
    One(Box<B64>),
    Nothing,
}

/// 256 KiB inline.
#[derive(Debug, Clone, Copy, remote_core::Wire)]
pub struct B256 {
    pub a: [B64; 4],
}

/// Methods whose arguments are large inline, by value.
#[remote]
pub trait Wide {
    async fn one(&self, v: B256) -> Result<u64, Error>;
    async fn two(&self, v: B256, w: B64) -> Result<u64, Error>;
    async fn three(&self, v: [B64; 3]) -> Result<u64, Error>;
    async fn four(&self, v: (B256, u8)) -> Result<u64, Error>;
    async fn five(&self, v: [B64; 16]) -> Result<u64, Error>;
    async fn yielding(&self, v: [B64; 16]) -> Result<u64, Error>;
    fn blocking(&self, v: [B64; 16]) -> Result<u64, Error>;
    async fn small(&self, x: u64) -> Result<u64, Error>;
}

struct WideImpl;

#[remote]
impl Wide for WideImpl {
    async fn one(&self, v: B256) -> Result<u64, Error> {
        Ok(mark(&v.a[3]))
    }
    async fn two(&self, v: B256, w: B64) -> Result<u64, Error> {
        Ok(mark(&v.a[0]) + mark(&w))
    }
    async fn three(&self, v: [B64; 3]) -> Result<u64, Error> {
        Ok(v.iter().map(mark).sum())
    }
    async fn four(&self, v: (B256, u8)) -> Result<u64, Error> {
        Ok(mark(&v.0.a[1]) + u64::from(v.1))
    }
    async fn five(&self, v: [B64; 16]) -> Result<u64, Error> {
        Ok(v.iter().map(mark).sum())
    }
    async fn yielding(&self, v: [B64; 16]) -> Result<u64, Error> {
        tokio::task::yield_now().await;
        Ok(v.iter().map(mark).sum::<u64>() + 1)
    }
    fn blocking(&self, v: [B64; 16]) -> Result<u64, Error> {
        Ok(v.iter().map(mark).sum::<u64>() + 2)
    }
    async fn small(&self, x: u64) -> Result<u64, Error> {
        Ok(x + 1)
    }
}

#[remote]
pub trait Inline {
    async fn array(&self, a: Box<[B64; 16]>) -> Result<u64, Error>;
    async fn tuple(&self, t: Box<Eight>) -> Result<u64, Error>;
    async fn list(&self, l: Vec<Option<Box<[B64; 8]>>>) -> Result<u64, Error>;
    async fn holder(&self, h: Holder) -> Result<u64, Error>;
    async fn reply(&self, mark: u64) -> Result<Box<[B64; 16]>, Error>;
    async fn events(&self, e: Vec<Ev>) -> Result<u64, Error>;
    async fn flat(&self, v: Vec<B64>) -> Result<u64, Error>;
    async fn fails(&self, mark: u64) -> Result<u64, Failure>;
    async fn boxes(&self, v: Vec<Box<[B64; 2]>>) -> Result<u64, Error>;
    async fn boxes_back(&self, n: u64) -> Result<Vec<Box<[B64; 2]>>, Error>;
}

/// An application error holding 1 MiB inline behind a box.
#[derive(Debug, remote_core::Wire)]
pub enum Failure {
    Detail(Box<[B64; 16]>),
    Toolkit(Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed")
    }
}

impl std::error::Error for Failure {}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Toolkit(e)
    }
}

struct Impl;

#[remote]
impl Inline for Impl {
    async fn array(&self, a: Box<[B64; 16]>) -> Result<u64, Error> {
        Ok(a.iter().map(mark).sum())
    }
    async fn tuple(&self, t: Box<Eight>) -> Result<u64, Error> {
        Ok(mark(&t.0) + mark(&t.7))
    }
    async fn list(&self, l: Vec<Option<Box<[B64; 8]>>>) -> Result<u64, Error> {
        Ok(l.iter().flatten().map(|b| mark(&b[7])).sum())
    }
    async fn holder(&self, h: Holder) -> Result<u64, Error> {
        let mut sum = 0;
        let mut at = Some(&h);
        while let Some(h) = at {
            sum += mark(&h.b[0]);
            at = h.next.as_deref();
        }
        Ok(sum)
    }
    async fn events(&self, e: Vec<Ev>) -> Result<u64, Error> {
        Ok(e.iter()
            .map(|e| match e {
                Ev::Many(l) => l.iter().map(|b| mark(&b[0])).sum(),
                Ev::One(b) => mark(b),
                Ev::Nothing => 1,
            })
            .sum())
    }
    async fn flat(&self, v: Vec<B64>) -> Result<u64, Error> {
        Ok(v.iter().map(mark).sum())
    }
    async fn boxes(&self, v: Vec<Box<[B64; 2]>>) -> Result<u64, Error> {
        Ok(v.iter().map(|b| mark(&b[1])).sum())
    }
    async fn boxes_back(&self, n: u64) -> Result<Vec<Box<[B64; 2]>>, Error> {
        Ok((0..n).map(|m| boxed::<2>(|i| b64(m + i as u64))).collect())
    }
    async fn fails(&self, m: u64) -> Result<u64, Failure> {
        Err(Failure::Detail(boxed::<16>(|i| b64(m + i as u64))))
    }
    async fn reply(&self, m: u64) -> Result<Box<[B64; 16]>, Error> {
        let mut v = vec![b64(0); 16];
        v[15] = b64(m);
        Ok(v.into_boxed_slice().try_into().expect("16 values"))
    }
}

/// A `B64` marked `m` (zeros besides, so it encodes small).
fn b64(m: u64) -> B64 {
    let mut b = B64 {
        a: [[[0; 32]; 32]; 8],
    };
    b.a[7][31][31] = m;
    b
}

fn mark(b: &B64) -> u64 {
    b.a[7][31][31]
}

fn boxed<const N: usize>(f: impl Fn(usize) -> B64) -> Box<[B64; N]> {
    let v: Vec<B64> = (0..N).map(f).collect();
    v.into_boxed_slice().try_into().expect("N values")
}

/// A server of `root` whose budget has room for these values.
async fn server_of<T: ?Sized + remote_core::Interface>(
    root: impl Fn() -> Remote<T> + Send + Sync + 'static,
) -> remote_core::ServerHandle {
    Server::builder()
        .limits(Limits {
            memory_budget: 1 << 30,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| root())
}

/// A server of `Wide`.
async fn wide_server() -> remote_core::ServerHandle {
    server_of(|| Remote::new(Arc::new(WideImpl) as Arc<dyn Wide>)).await
}

/// A server of `Inline`, and a connection to it.
async fn connected() -> (remote_core::ServerHandle, Connection) {
    let server = server_of(|| Remote::new(Arc::new(Impl) as Arc<dyn Inline>)).await;
    let conn = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    (server, conn)
}

/// Arguments holding 1 MiB and 512 KiB inline behind a box, and a list of
/// such boxes, decode on the server's 2 MiB worker stacks (a debug build
/// overflowed on each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxed_arrays_and_tuples_decode_with_room_for_what_they_hold() {
    let (_server, conn) = connected().await;
    let api = conn.root::<dyn Inline>();
    let a = boxed::<16>(|i| b64(i as u64));
    assert_eq!(api.array(a).await.unwrap(), (0..16).sum::<u64>());
    let b = b64(5);
    let t = Box::new((b64(3), b, b, b, b, b, b, b64(4)));
    assert_eq!(api.tuple(t).await.unwrap(), 7);
    let l = vec![
        Some(boxed::<8>(|_| b64(2))),
        None,
        Some(boxed::<8>(|_| b64(9))),
    ];
    assert_eq!(api.list(l).await.unwrap(), 11);
}

/// Each level of a derived type counts what its fields hold beyond their
/// size: a chain of `Holder`s, each with 512 KiB behind a box.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_types_boxed_fields_are_counted_at_each_level() {
    let (_server, conn) = connected().await;
    let api = conn.root::<dyn Inline>();
    let h = (1..=6u64).fold(None, |next, m| {
        Some(Holder {
            b: boxed::<8>(|_| b64(m)),
            next: next.map(Box::new),
        })
    });
    assert_eq!(api.holder(h.unwrap()).await.unwrap(), 21);
}

/// A reply holding 1 MiB inline behind a box decodes on the client's
/// worker stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boxed_array_reply_decodes_on_the_client() {
    let (_server, conn) = connected().await;
    let api = conn.root::<dyn Inline>();
    let r = api.reply(42).await.unwrap();
    assert_eq!(mark(&r[15]), 42);
    assert_eq!(mark(&r[0]), 0);
}

/// An application error holding 1 MiB inline behind a box, rebuilt from
/// the reply's error data on the client's worker stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_holding_much_inline_decodes_on_the_client() {
    let (_server, conn) = connected().await;
    let api = conn.root::<dyn Inline>();
    match api.fails(5).await {
        Err(Failure::Detail(d)) => assert_eq!((mark(&d[0]), mark(&d[15])), (5, 20)),
        other => panic!("{other:?}"),
    }
}

/// The encoded arguments of `one` (marked 9), `four` (7) and `five` (6),
/// made off the test's future (a debug build keeps such values on its
/// frames).
fn wide_args() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut v = Box::new(B256 { a: [b64(0); 4] });
    v.a[3] = b64(9);
    let one = remote_core::__private::encode_value(&(&*v,)).unwrap();
    v.a[3] = b64(0);
    v.a[1] = b64(5);
    let four = remote_core::__private::encode_value(&((&*v, 2u8),)).unwrap();
    let five = boxed::<16>(|i| b64(u64::from(i == 15) * 6));
    let five = remote_core::__private::encode_value(&(&*five,)).unwrap();
    (one, four, five)
}

/// An interface whose methods take 256 KiB to 1 MiB inline, by value:
/// the dispatcher held every method's arguments in one frame, and a
/// debug build overflowed its 2 MiB worker stack on any call, a small one
/// too (red-team pass 41). Sent raw (a client with such values on its
/// own stack is the client's business): an honest value, and nil where
/// the value should be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interface_with_large_inline_arguments_serves_each_call() {
    let server = wide_server().await;
    let mut s = raw::opened(&server).await;
    // A return frame ends with its value: a positive fixint here.
    let value = |f: Vec<u8>| f.last().copied();
    assert_eq!(
        value(raw::answered(&mut s, 1, "small", &[0x91, 41]).await),
        Some(42)
    );
    let (one, four, five) = wide_args();
    assert_eq!(value(raw::answered(&mut s, 3, "one", &one).await), Some(9));
    assert_eq!(
        value(raw::answered(&mut s, 5, "four", &four).await),
        Some(7)
    );
    assert_eq!(
        value(raw::answered(&mut s, 13, "five", &five).await),
        Some(6)
    );
    // Polled again after a wait: every poll's frame holds the arguments
    // in a debug build (red-team pass 43).
    let yielding = raw::answered(&mut s, 17, "yielding", &five).await;
    assert_eq!(value(yielding), Some(7));
    // A blocking method's body, on the blocking pool's 2 MiB thread.
    let blocking = raw::answered(&mut s, 19, "blocking", &five).await;
    assert_eq!(value(blocking), Some(8));
    for (id, method, args) in [
        (7, "two", &[0x92, 0xc0, 0xc0][..]),
        (9, "three", &[0x91, 0xc0]),
        (11, "one", &[0x91, 0xc0]),
        (15, "five", &[0x91, 0xc0]),
        (21, "yielding", &[0x91, 0xc0]),
        (23, "blocking", &[0x91, 0xc0]),
    ] {
        raw::refused(&mut s, id, method, args, "bad_arguments", "").await;
    }
}

/// What a variant holds behind its boxes is made room for as that field
/// decodes, not at each value of the enum: a list of 100 values of the
/// variant holding nothing took a segment each, and past 64 was refused
/// (red-team pass 43). Such variants among them decode too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enums_boxed_variants_cost_only_where_they_decode() {
    let (_server, conn) = connected().await;
    let api = conn.root::<dyn Inline>();
    let mut e: Vec<Ev> = (0..100).map(|_| Ev::Nothing).collect();
    e.push(Ev::Many(vec![boxed::<8>(|_| b64(10)); 2]));
    e.push(Ev::One(Box::new(b64(1000))));
    assert_eq!(api.events(e).await.unwrap(), 100 + 20 + 1000);
}

/// An encode's level holds references, not copies: a list of 100 values
/// of a 64 KiB struct is sent from a 2 MiB thread (each value took a
/// segment, and past 64 the list could not be sent, red-team pass 43).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_large_values_is_encoded_on_a_small_stack() {
    let (_server, conn) = connected().await;
    let api = conn.root::<dyn Inline>();
    let v: Vec<B64> = (0..100).map(|_| b64(3)).collect();
    assert_eq!(api.flat(v).await.unwrap(), 300);
}

/// A list of boxed arrays of a derived type: each `B64` inside needs a
/// level (32 copies of its size) under the list's and the box's frames.
/// The arguments' session had room for the copies only, so each took a
/// segment, and 80 of them were refused past the 64 a value may take
/// (red-team pass 44, in a debug build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_boxed_derived_values_has_room_for_each_ones_level() {
    let (_server, conn) = connected().await;
    let api = conn.root::<dyn Inline>();
    let v: Vec<Box<[B64; 2]>> = (0..40).map(|_| boxed::<2>(|i| b64(i as u64))).collect();
    assert_eq!(api.boxes(v).await.unwrap(), 40);
    // And as a reply, on the client's worker.
    let back = api.boxes_back(40).await.unwrap();
    assert_eq!(
        back.iter().map(|b| mark(&b[1])).sum::<u64>(),
        (1..=40).sum()
    );
}
