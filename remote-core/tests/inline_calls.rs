//! Calls whose handler finishes in its first poll, run by the reader as
//! their frame is handled (never admitted to the running-calls table,
//! `conn/mod.rs`): a blocking closure such a handler starts and leaves
//! running keeps the call counted in `max_calls_in_flight`, but the call's
//! id is free once its reply is out (PROTOCOL.md §8), so a peer may reuse
//! it at once. A handler that answers and then panics still answers once.

#[path = "support/raw.rs"]
mod raw;

mod quiet_panics;

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use raw::{bounded, call, error_of, eventually, frame, kind, opened, RETURN};
use remote_core::__private::{Args, CallCx, CallFuture, Deferred, Failed};
use remote_core::schema::{InterfaceDef, Location, SchemaBuilder, Ty};
use remote_core::{BoxFuture, Dispatch, Error, Handle, Interface, Limits, Remote, Server};
use tokio::io::AsyncWriteExt;

/// How long the test's blocking closure may wait for its gate.
const PATIENCE: Duration = Duration::from_secs(60);

/// A hand-written interface: `ping`, and (dispatch only) `kick`, which
/// starts a blocking closure and answers without waiting for it.
pub trait Kick: Send + Sync + 'static {
    fn ping(&self) -> BoxFuture<'_, Result<u32, Error>>;
    /// Blocks until the test opens the gate.
    fn wait_gate(&self) -> Result<(), Error>;
    #[doc(hidden)]
    fn __remote_handle(&self) -> Option<&Handle> {
        None
    }
}

/// The closure's gate and what the test observes.
#[derive(Debug, Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    /// Closures that returned.
    done: AtomicUsize,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let open = self.open.lock().unwrap();
        // Bounded so a failing test cannot hang the run.
        let _open = self
            .opened
            .wait_timeout_while(open, PATIENCE, |o| !*o)
            .unwrap();
        self.done.fetch_add(1, SeqCst);
    }
}

/// Opens the gate when dropped, so a failing test does not leave its
/// closure waiting for [`PATIENCE`].
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

struct Impl(Arc<Gate>);

impl Kick for Impl {
    fn ping(&self) -> BoxFuture<'_, Result<u32, Error>> {
        Box::pin(async { Ok(7) })
    }
    fn wait_gate(&self) -> Result<(), Error> {
        self.0.wait();
        Ok(())
    }
}

struct KickDispatch(Arc<dyn Kick>);

impl Dispatch for KickDispatch {
    fn interface_name(&self) -> &'static str {
        "Kick"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn call(&self, method: &str, args: Args<'_>, cx: CallCx) -> Result<CallFuture, Error> {
        let obj = self.0.clone();
        Ok(match method {
            "ping" => {
                let (): () = args.decode()?;
                Box::pin(async move { cx.reply(obj.ping().await) })
            }
            "kick" => {
                let (): () = args.decode()?;
                Box::pin(async move {
                    {
                        // Started (a free slot: the first poll starts it),
                        // then left to run on: a closure cannot be stopped.
                        let mut job = std::pin::pin!(cx.blocking(move || obj.wait_gate()));
                        assert!((&mut job).now_or_never().is_none(), "the gate is shut");
                    }
                    cx.reply(Ok::<u32, Error>(1))
                })
            }
            // Answer, then panic: in the first poll, or in the task the
            // call goes on in after a yield.
            "answer_then_panic" | "answer_yield_panic" => {
                let (): () = args.decode()?;
                let yields = method == "answer_yield_panic";
                Box::pin(async move {
                    let reply = cx.reply(Ok::<u32, Error>(2));
                    if yields {
                        tokio::task::yield_now().await;
                    }
                    if reply_then_panic() {
                        panic!("after its reply {}", quiet_panics::DELIBERATE);
                    }
                    reply
                })
            }
            _ => return Err(Error::unknown_method("Kick", method)),
        })
    }
}

#[derive(Clone, Debug)]
pub struct KickClient {
    handle: Handle,
}

impl Kick for KickClient {
    fn ping(&self) -> BoxFuture<'_, Result<u32, Error>> {
        self.handle.call("ping", ())
    }
    fn wait_gate(&self) -> Result<(), Error> {
        self.handle.call_blocking("wait_gate", ())
    }
    fn __remote_handle(&self) -> Option<&Handle> {
        Some(&self.handle)
    }
}

#[derive(Debug)]
pub struct KickDeferred(Deferred<dyn Kick>);

impl Kick for KickDeferred {
    fn ping(&self) -> BoxFuture<'_, Result<u32, Error>> {
        Box::pin(async move {
            match self.0.object().await {
                Ok(o) => o.ping().await,
                Err(e) => Failed::failed(e),
            }
        })
    }
    fn wait_gate(&self) -> Result<(), Error> {
        match self.0.object_blocking() {
            Ok(o) => o.wait_gate(),
            Err(e) => Failed::failed(e),
        }
    }
}

impl Interface for dyn Kick {
    fn name() -> &'static str {
        "Kick"
    }
    fn into_dispatch(this: Arc<Self>) -> Arc<dyn Dispatch> {
        Arc::new(KickDispatch(this))
    }
    fn from_dispatch(d: &Arc<dyn Dispatch>) -> Option<Arc<Self>> {
        d.as_any()
            .downcast_ref::<KickDispatch>()
            .map(|k| k.0.clone())
    }
    fn proxy(handle: Handle) -> Arc<Self> {
        Arc::new(KickClient { handle })
    }
    fn deferred(target: Deferred<Self>) -> Arc<Self> {
        Arc::new(KickDeferred(target))
    }
    fn handle(this: &Self) -> Option<&Handle> {
        this.__remote_handle()
    }
    fn describe(b: &mut SchemaBuilder) -> Ty {
        b.define_interface("inline_calls::Kick".into(), |_| InterfaceDef {
            path: "inline_calls::Kick".into(),
            name: "Kick".into(),
            methods: vec![],
            location: Location::default(),
            doc: String::new(),
        })
    }
}

/// A server over loopback TCP whose root is a [`Kick`] behind `gate`.
fn server(
    gate: &Arc<Gate>,
    limits: Limits,
) -> impl std::future::Future<Output = remote_core::ServerHandle> {
    let gate = gate.clone();
    async move {
        Server::builder()
            .limits(limits)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(move |_| Remote::new(Arc::new(Impl(gate.clone())) as Arc<dyn Kick>))
    }
}

/// The reply to call `id`: `Ok(())` for a return, else the error's kind
/// (or the goodbye's reason, for a connection the server closed).
async fn reply_to<S: tokio::io::AsyncRead + Unpin>(s: &mut S, id: u64) -> Result<(), String> {
    let f = bounded(frame(s))
        .await
        .expect("a frame, not the end of the stream");
    match kind(&f) {
        RETURN => {
            assert_eq!(u64::from(f[2]), id, "the reply's call id");
            Ok(())
        }
        raw::GOODBYE => Err(format!(
            "goodbye: {}",
            remote_core::proto::Reader::new(&f[2..]).str().unwrap()
        )),
        _ => {
            let (got, k, m) = error_of(&f).expect("a return, an error or a goodbye");
            assert_eq!(got, id, "the reply's call id");
            Err(format!("{k}: {m}"))
        }
    }
}

/// A handler that answers in its first poll and leaves a blocking closure
/// running: its reply frees the call id (the peer reuses it at once, as
/// PROTOCOL.md §8 allows), while the call keeps counting in
/// `max_calls_in_flight` until the closure returns. The call was admitted
/// with its id still in use, so the reuse was taken for a second call
/// with an id already in flight and the connection closed (fails: goodbye
/// "protocol violation: call id 1 is already in flight").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_answered_inline_is_free_while_its_closure_runs_on() {
    let gate = Arc::new(Gate::default());
    let _open = OpenOnDrop(gate.clone());
    let limits = Limits {
        max_calls_in_flight: 1,
        ..Limits::default()
    };
    let server = server(&gate, limits).await;
    let mut s = opened(&server).await;
    s.write_all(&call(1, 0, "kick", 60_000, &[0x90]))
        .await
        .unwrap();
    assert_eq!(reply_to(&mut s, 1).await, Ok(()), "kick answers at once");
    // The id again: the call it names is answered; the closure still
    // counts, so this one is refused for the limit, not as a violation.
    s.write_all(&call(1, 0, "ping", 60_000, &[0x90]))
        .await
        .unwrap();
    let refused = reply_to(&mut s, 1).await.unwrap_err();
    assert!(
        refused.starts_with("limit_exceeded: limit exceeded: max_calls_in_flight = 1"),
        "{refused}"
    );
    gate.open();
    assert!(eventually(|| gate.done.load(SeqCst) == 1).await);
    // Once the closure returned, the call stops counting: the id serves
    // again (retried: the closure's end reaches the reader as a message).
    let mut served = false;
    for _ in 0..600 {
        s.write_all(&call(1, 0, "ping", 60_000, &[0x90]))
            .await
            .unwrap();
        match reply_to(&mut s, 1).await {
            Ok(()) => {
                served = true;
                break;
            }
            Err(e) if e.starts_with("limit_exceeded") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        served,
        "the call still counted 60 s after its closure returned"
    );
}

/// Always `true`: keeps the code after a handler's `panic!` reachable to
/// the compiler.
fn reply_then_panic() -> bool {
    std::hint::black_box(true)
}

/// A hand-written handler that answers and then panics (`method`): the
/// call has one reply. (A second, the panic's error, went out after the
/// first: a peer that had reused the id, as PROTOCOL.md §8 allows, took it
/// for its new call's, and ours closes the connection on a reply to a call
/// that is not waiting.)
async fn answers_once(method: &str) {
    quiet_panics::install();
    let gate = Arc::new(Gate::default());
    let server = server(&gate, Limits::default()).await;
    let mut s = opened(&server).await;
    s.write_all(&call(1, 0, method, 60_000, &[0x90]))
        .await
        .unwrap();
    assert_eq!(reply_to(&mut s, 1).await, Ok(()), "{method}");
    // The next frame answers the next call, not this one again. (A
    // yielding handler's task panics at once, before the ping is even
    // sent: its error would be queued first.)
    s.write_all(&call(2, 0, "ping", 60_000, &[0x90]))
        .await
        .unwrap();
    assert_eq!(reply_to(&mut s, 2).await, Ok(()), "after {method}");
    assert_eq!(
        server.stats().calls.errors["panic"],
        0,
        "a panic error was sent"
    );
}

/// It panics in its first poll, run by the reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_after_its_reply_in_its_first_poll_answers_once() {
    answers_once("answer_then_panic").await;
}

/// It panics later, in the task its call goes on in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_after_its_reply_in_its_task_answers_once() {
    answers_once("answer_yield_panic").await;
}
