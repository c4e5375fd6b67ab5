//! Remote streams: a method returns a stream whose items the receiver pulls
//! lazily, in batches, with backpressure.
//!
//! [`RemoteStream<T>`] crosses the wire by reference (to a source object
//! living with the sender). The receiver pulls at most one batch at a time
//! (`batch` items, default 32), only when it has consumed the previous one,
//! so a fast producer never floods a slow consumer: the producer is simply
//! not polled. A batch of a stream served from this process (a local
//! stream, a list's iterator) also stops at [`MAX_PAGE_BYTES`] of encoded
//! items, or half of the serving connection's frame limit if that is less
//! (at least one item), so it fits in a reply frame. (A stream received
//! from one peer and passed on to another is pulled in the batches the
//! first one hands out.)
//!
//! [`MAX_PAGE_BYTES`]: crate::collections::MAX_PAGE_BYTES
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use futures_util::StreamExt;
//! use remote_core::stream::RemoteStream;
//! let s = RemoteStream::from_items(1..=3u32);
//! let items: Vec<u32> = s.map(|r| r.unwrap()).collect().await;
//! assert_eq!(items, vec![1, 2, 3]);
//! # }
//! ```

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::__private::{Args, CallCx, CallFuture, Deferred, Failed};
use crate::collections::page::page_bytes;
use crate::held::Kept;
use crate::schema::{InterfaceDef, Location, MethodDef, SchemaBuilder, Ty};
use crate::{BoxFuture, Dispatch, Error, Handle, Interface, Remote, Wire};

/// Default number of items pulled per round trip.
pub const DEFAULT_BATCH: u32 = 32;
/// Largest batch a source hands out per pull, whatever the puller asks.
pub const MAX_BATCH: u32 = 1024;

/// The serving side of a remote stream (wire name of its one method:
/// `next_batch`, argument: max items (u32), result: array of items; an empty
/// array means the stream ended).
pub trait StreamSource<T: Wire>: Send + Sync + 'static {
    /// Up to `max` next items; waits for at least one unless the stream ended
    /// (then returns none).
    fn next_batch(&self, max: u32) -> BoxFuture<'_, Result<Vec<T>, Error>>;
    #[doc(hidden)]
    fn __remote_handle(&self) -> Option<&Handle> {
        None
    }
}

struct LocalSource<T> {
    inner: tokio::sync::Mutex<Pending<T>>,
}

/// A local source's stream, what the last batch polled and could not carry
/// (handed out first by the next one), and the largest item's encoded size
/// so far.
struct Pending<T> {
    stream: Pin<Box<dyn Stream<Item = T> + Send>>,
    held: Option<Held<T>>,
    largest: usize,
}

/// An item polled for a batch that could not carry it.
enum Held<T> {
    /// It opens the next batch, counted meanwhile in the pulling
    /// connection's memory budget (the guard; `None` outside a
    /// connection).
    Item(T, Option<Box<dyn Send>>),
    /// It could not be held (no room for it, or too large for any reply):
    /// dropped, and every pull from here on fails with this (a consumer
    /// must not take the items after it for the rest of the stream).
    Failed(Error),
}

/// What a stream batch's reply adds to its items' encoded sizes, at most
/// (the reply's head, the array's): kept free below the frame limit.
const BATCH_OVERHEAD: usize = 1 << 10;

/// The most a reply may carry of encoded items: the serving connection's
/// frame limit less [`BATCH_OVERHEAD`] (no bound outside a connection).
fn frame_room() -> usize {
    crate::Peer::current().map_or(usize::MAX, |p| {
        p.max_frame_len().saturating_sub(BATCH_OVERHEAD)
    })
}

impl<T: Wire> LocalSource<T> {
    /// Up to `max` next items within `bytes` of encoded items (at least
    /// one). Items ready now are taken while the largest item so far would
    /// still fit beside the batch, so a stream of items of one size is
    /// never polled for one it cannot send; an item larger than every
    /// earlier one that does not fit is held for the next batch, counted at
    /// its decoded weight in the pulling connection's memory budget, with
    /// what every connection of the server holds so at most an eighth of
    /// it; one that cannot be held so, or is too large for any reply
    /// (`room`), ends the stream with an error. (Red-team passes: one item
    /// of 300 KiB held in each of 200 streams pulled once, 59 MiB outside
    /// the budget, when the next item was always polled; with items of two
    /// sizes, uncounted, 368 MB held over one connection against a 64 MiB
    /// budget; counted per connection, at their encoded size, nine
    /// connections held the whole budget, and items of small numbers eight
    /// times it.)
    async fn batch(&self, max: u32, bytes: usize, room: usize) -> Result<Vec<T>, Error> {
        let max = max.clamp(1, MAX_BATCH) as usize;
        let mut p = self.inner.lock().await;
        let first = match p.held.take() {
            Some(Held::Item(x, _counted)) => x,
            Some(Held::Failed(e)) => {
                p.held = Some(Held::Failed(e.clone()));
                return Err(e);
            }
            None => match p.stream.next().await {
                None => return Ok(Vec::new()),
                Some(x) => x,
            },
        };
        let mut used = measure(&first);
        // An item over the bound goes alone whatever is counted: counted as
        // the largest, it would make every later batch a single item.
        let largest = |p: &mut Pending<T>, len: usize| {
            if len <= bytes {
                p.largest = p.largest.max(len);
            }
        };
        largest(&mut p, used);
        let mut out = vec![first];
        while out.len() < max && used.saturating_add(p.largest) <= bytes {
            let Some(Some(x)) = p.stream.next().now_or_never() else {
                break;
            };
            let len = measure(&x);
            largest(&mut p, len);
            if used.saturating_add(len) > bytes {
                p.held = Some(hold(x, len, room));
                break;
            }
            used += len;
            out.push(x);
        }
        Ok(out)
    }
}

/// An item of `len` encoded bytes polled for a batch that cannot carry it,
/// kept for the next one ([`Held`]).
fn hold<T: Wire>(item: T, len: usize, room: usize) -> Held<T> {
    if len > room {
        return Held::Failed(Error::limit(
            "max_frame_len",
            room.saturating_add(BATCH_OVERHEAD) as u64,
            format!("a stream item encodes to {len} bytes, more than a reply may carry"),
        ));
    }
    // Weighed as arguments are (its bytes, 48 per item of its arrays and
    // maps, and what its types take beyond that): a `Vec` of small numbers
    // holds eight times its bytes.
    let weight = crate::codec::held_weight(&item).unwrap_or(len).max(len);
    match crate::Peer::current().map_or(Ok(None), |p| p.try_hold(weight)) {
        Ok(counted) => Held::Item(item, counted),
        Err(most) => Held::Failed(Error::limit(
            "memory_budget",
            most as u64,
            format!(
                "a stream item weighing {weight} bytes could not be held for the next batch \
                 (stream items held between pulls may take an eighth of the memory budget); \
                 it was dropped and the stream ends here"
            ),
        )),
    }
}

impl<T: Wire> StreamSource<T> for LocalSource<T> {
    fn next_batch(&self, max: u32) -> BoxFuture<'_, Result<Vec<T>, Error>> {
        // Within what a reply to the pulling peer's connection may carry.
        Box::pin(self.batch(max, page_bytes(), frame_room()))
    }
}

/// An item's encoded size (an item that cannot be measured cannot be
/// encoded either: its batch fails as a whole when the reply is).
fn measure<T: Wire>(item: &T) -> usize {
    crate::codec::encoded_len(item).unwrap_or(0)
}

struct SourceClient<T> {
    handle: Handle,
    _t: PhantomData<fn() -> T>,
}

impl<T: Wire> StreamSource<T> for SourceClient<T> {
    fn next_batch(&self, max: u32) -> BoxFuture<'_, Result<Vec<T>, Error>> {
        self.handle.call("next_batch", (max,))
    }
    fn __remote_handle(&self) -> Option<&Handle> {
        Some(&self.handle)
    }
}

/// A source a local call in flight will return (`Interface::deferred`).
struct SourceDeferred<T: Wire>(Deferred<dyn StreamSource<T>>);

impl<T: Wire> StreamSource<T> for SourceDeferred<T> {
    fn next_batch(&self, max: u32) -> BoxFuture<'_, Result<Vec<T>, Error>> {
        Box::pin(async move {
            match self.0.object().await {
                Ok(source) => source.next_batch(max).await,
                Err(e) => Failed::failed(e),
            }
        })
    }
}

struct SourceDispatch<T>(Arc<dyn StreamSource<T>>);

impl<T: Wire> Dispatch for SourceDispatch<T> {
    fn interface_name(&self) -> &'static str {
        "StreamSource"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn call(&self, method: &str, args: Args<'_>, cx: CallCx) -> Result<CallFuture, Error> {
        match method {
            "next_batch" => {
                let (max,): (u32,) = args.decode()?;
                let obj = self.0.clone();
                Ok(Box::pin(async move {
                    let r = obj.next_batch(max).await;
                    cx.reply(r)
                }))
            }
            _ => Err(Error::unknown_method("StreamSource", method)),
        }
    }
}

impl<T: Wire> Interface for dyn StreamSource<T> {
    // `next` is never cached: a write to a stream pushes nothing.
    const CACHED: bool = false;

    fn name() -> &'static str {
        "StreamSource"
    }
    fn into_dispatch(this: Arc<Self>) -> Arc<dyn Dispatch> {
        Arc::new(SourceDispatch(this))
    }
    fn from_dispatch(d: &Arc<dyn Dispatch>) -> Option<Arc<Self>> {
        d.as_any()
            .downcast_ref::<SourceDispatch<T>>()
            .map(|s| s.0.clone())
    }
    fn proxy(handle: Handle) -> Arc<Self> {
        Arc::new(SourceClient {
            handle,
            _t: PhantomData,
        })
    }
    fn deferred(target: Deferred<Self>) -> Arc<Self> {
        Arc::new(SourceDeferred(target))
    }
    fn handle(this: &Self) -> Option<&Handle> {
        this.__remote_handle()
    }
    fn describe(b: &mut SchemaBuilder) -> Ty {
        let path = format!(
            "remote_core::stream::StreamSource<{}>",
            std::any::type_name::<T>()
        );
        // Its identity is the item type's: two item types of one name
        // (`type_name`) are a conflict, not one interface.
        let id = std::any::TypeId::of::<T>();
        let at = crate::schema::Location::default();
        b.define_interface_at(path.clone(), id, &at, |b| {
            let item = T::describe(b);
            InterfaceDef {
                path,
                name: "StreamSource".into(),
                methods: vec![MethodDef {
                    name: "next_batch".into(),
                    wire_name: "next_batch".into(),
                    is_async: true,
                    args: vec![crate::schema::ArgDef {
                        name: "max".into(),
                        ty: Ty::Int {
                            bits: 32,
                            signed: false,
                        },
                    }],
                    returns: Ty::Seq {
                        elem: Box::new(item),
                        max_len: Some(u64::from(MAX_BATCH)),
                    },
                    error: Ty::RemoteError,
                    requires_auth: false,
                    cache: None,
                    location: Location {
                        file: file!().into(),
                        line: line!(),
                        column: 1,
                    },
                    doc: "Up to `max` next items; empty when the stream ended.".into(),
                }],
                location: Location {
                    file: file!().into(),
                    line: line!(),
                    column: 1,
                },
                doc: "The serving side of a remote stream.".into(),
            }
        })
    }
}

/// A stream that can be returned from (or passed to) a remote method.
///
/// Locally it is a `Stream<Item = Result<T, Error>>`; sent over a
/// connection, the receiver gets a proxy that pulls batches from the
/// sender's source.
///
/// ```
/// use std::sync::Arc;
/// use futures_util::TryStreamExt;
/// use remote_core::stream::RemoteStream;
/// use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
///
/// #[remote]
/// pub trait Numbers {
///     /// `0..n`, pulled lazily by the caller.
///     async fn upto(&self, n: u32) -> Result<RemoteStream<u32>, Error>;
/// }
///
/// pub struct Counter;
///
/// #[remote]
/// impl Numbers for Counter {
///     async fn upto(&self, n: u32) -> Result<RemoteStream<u32>, Error> {
///         Ok(RemoteStream::from_items(0..n))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// let served: Remote<dyn Numbers> = Remote::new(Arc::new(Counter));
/// let (client, _server) =
///     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(served)).await?;
/// // The reader chooses how many items it pulls per round trip.
/// let stream = client.root::<dyn Numbers>().upto(100).await?.with_batch(16);
/// assert!(stream.is_remote());
/// let all: Vec<u32> = stream.try_collect().await?;
/// assert_eq!(all.len(), 100);
/// # Ok(()) }
/// ```
pub struct RemoteStream<T: Wire> {
    source: Remote<dyn StreamSource<T>>,
    buf: VecDeque<T>,
    /// What `buf`'s batch counts in the memory budget, if it came in a
    /// heavy reply (`held::captured`): given back once it is taken.
    held: Vec<Kept>,
    pending: Option<Pull<T>>,
    done: bool,
    batch: u32,
}

/// A pull of the next batch, and what the batch counts in the budget.
type Pull<T> = BoxFuture<'static, (Result<Vec<T>, Error>, Vec<Kept>)>;

// Nothing in a RemoteStream is address-sensitive (the pending future is boxed).
impl<T: Wire> Unpin for RemoteStream<T> {}

impl<T: Wire> fmt::Debug for RemoteStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStream")
            .field("remote", &self.source.is_remote())
            .field("buffered", &self.buf.len())
            .field("done", &self.done)
            .finish()
    }
}

impl<T: Wire> RemoteStream<T> {
    /// Serves `stream`'s items to whoever receives this.
    pub fn new(stream: impl Stream<Item = T> + Send + 'static) -> Self {
        let src: Arc<dyn StreamSource<T>> = Arc::new(LocalSource {
            // Fused: a batch that met the end polls it again next time.
            inner: tokio::sync::Mutex::new(Pending {
                stream: Box::pin(stream.fuse()),
                held: None,
                largest: 0,
            }),
        });
        Self::from_source(Remote::new(src))
    }

    /// Serves an iterator's items.
    pub fn from_items<I>(iter: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::new(futures_util::stream::iter(iter))
    }

    /// Serves the items `source` hands out (the runtime's own sources).
    pub(crate) fn from_source(source: Remote<dyn StreamSource<T>>) -> Self {
        RemoteStream {
            source,
            buf: VecDeque::new(),
            held: Vec::new(),
            pending: None,
            done: false,
            batch: DEFAULT_BATCH,
        }
    }

    /// Pulls up to `n` items per round trip (1..=1024), when this end
    /// reads the stream. The batch size is not sent: a stream returned to
    /// a peer is pulled in the batches that peer asks for. A source served
    /// from this process also stops a batch before the item that would
    /// take it past [`MAX_PAGE_BYTES`] of encoded items (half of the
    /// serving connection's frame limit if that is less; always at least
    /// one item), so a batch fits in a reply frame; the next batch starts
    /// with that item.
    ///
    /// [`MAX_PAGE_BYTES`]: crate::collections::MAX_PAGE_BYTES
    pub fn with_batch(mut self, n: u32) -> Self {
        self.batch = n.clamp(1, MAX_BATCH);
        self
    }

    /// Whether the items come from a peer.
    pub fn is_remote(&self) -> bool {
        self.source.is_remote()
    }
}

impl<T: Wire> Stream for RemoteStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(x) = this.buf.pop_front() {
                if this.buf.is_empty() {
                    // Its batch's last item: what the batch counted goes.
                    this.held.clear();
                }
                return Poll::Ready(Some(Ok(x)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let n = this.batch;
            let fut = this.pending.get_or_insert_with(|| {
                let src = this.source.clone();
                Box::pin(crate::held::captured(
                    async move { src.next_batch(n).await },
                ))
            });
            match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready((r, held)) => {
                    this.pending = None;
                    this.held = held;
                    match r {
                        Ok(items) if items.is_empty() => this.done = true,
                        // §5.1: a batch holds at most the items asked for.
                        Ok(items) if items.len() > n as usize => {
                            this.done = true;
                            let got = items.len();
                            drop(items);
                            this.held.clear();
                            return Poll::Ready(Some(Err(Error::Protocol(format!(
                                "a stream's batch of {got} items, {n} asked for"
                            )))));
                        }
                        Ok(items) => this.buf.extend(items),
                        Err(e) => {
                            this.done = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
            }
        }
    }
}

impl<T: Wire> Serialize for RemoteStream<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(s)
    }
}

impl<'de, T: Wire> Deserialize<'de> for RemoteStream<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Remote::<dyn StreamSource<T>>::deserialize(d).map(Self::from_source)
    }
}

#[diagnostic::do_not_recommend]
impl<T: Wire> Wire for RemoteStream<T> {
    fn describe(b: &mut SchemaBuilder) -> Ty {
        // The source's interface is listed too, so a client generated from
        // the schema alone knows the wire method a stream is pulled with.
        let source = match <dyn StreamSource<T> as Interface>::describe(b) {
            Ty::Capability { interface } => Some(interface),
            _ => None,
        };
        Ty::Stream {
            item: Box::new(b.ty::<T>()),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collections::MAX_PAGE_BYTES;

    fn source<T: Wire>(items: Vec<T>) -> LocalSource<T> {
        LocalSource {
            inner: tokio::sync::Mutex::new(Pending {
                stream: Box::pin(futures_util::stream::iter(items).fuse()),
                held: None,
                largest: 0,
            }),
        }
    }

    /// What a reply may carry beside a batch within `bytes` (half of a
    /// frame, as `page_bytes` makes it).
    fn room(bytes: usize) -> usize {
        2 * bytes - BATCH_OVERHEAD
    }

    /// Every batch `s` hands out, `bytes` at most each, until the end.
    async fn batches<T: Wire>(s: &LocalSource<T>, bytes: usize) -> Vec<Vec<T>> {
        let mut all = Vec::new();
        loop {
            let batch = s.batch(MAX_BATCH, bytes, room(bytes)).await.unwrap();
            if batch.is_empty() {
                return all;
            }
            all.push(batch);
        }
    }

    #[tokio::test]
    async fn a_batch_stops_at_a_pages_bytes_and_the_next_one_starts_with_the_rest() {
        let kib = |k: usize, c: u8| char::from(c).to_string().repeat(k << 10);
        // 200 KiB each: two fit in 512 KiB, and a third is not even
        // produced (the largest item so far would not fit beside them).
        let items: Vec<String> = (0..5u8).map(|i| kib(200, b'a' + i)).collect();
        let s = source(items.clone());
        let got = batches(&s, MAX_PAGE_BYTES).await;
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(got.concat(), items, "every item, in order");
        assert!(s.next_batch(1).await.unwrap().is_empty(), "still ended");
        // An item larger than every earlier one that does not fit opens
        // the next batch (held meanwhile, counted in the pulling
        // connection's budget: `tests/stream_held.rs`)...
        let items = vec![kib(100, b'a'), kib(450, b'b'), kib(10, b'c')];
        let s = source(items.clone());
        let got = batches(&s, MAX_PAGE_BYTES).await;
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(got.concat(), items);
        // ...and one too large for any reply is dropped, and the stream
        // ends with the error (every later pull fails so).
        let items = vec![kib(1, b'a'), kib(1100, b'b'), kib(1, b'c')];
        let s = source(items.clone());
        let bytes = MAX_PAGE_BYTES;
        assert_eq!(s.batch(8, bytes, room(bytes)).await.unwrap(), [&*items[0]]);
        for _ in 0..2 {
            let e = s.batch(8, bytes, room(bytes)).await.unwrap_err();
            assert_eq!(e.limit_name(), Some("max_frame_len"), "{e}");
        }
        // The bound is the caller's (half of its frame limit).
        let s = source(vec![kib(20, b'a'); 6]);
        let got = batches(&s, 64 << 10).await;
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3]);
        // An item alone over the bytes still goes, alone.
        let s = source(vec!["x".repeat(MAX_PAGE_BYTES + 1), "y".into()]);
        assert_eq!(s.next_batch(8).await.unwrap().len(), 1);
        assert_eq!(s.next_batch(8).await.unwrap(), ["y"]);
        // An item over the bound goes alone, and the batches after it are
        // not held to one item each.
        let mut items = vec![kib(600, b'a')];
        items.extend((0..2000).map(|_| String::from("b")));
        let got = batches(&source(items), MAX_PAGE_BYTES).await;
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1024, 976]);
        // Small items: the count is the bound.
        let s = source((0..5000u32).collect());
        assert_eq!(
            s.next_batch(u32::MAX).await.unwrap().len(),
            MAX_BATCH as usize
        );
    }
}
