//! The browser's runtime services: tasks are `wasm_bindgen_futures`'
//! microtasks, timers are `setTimeout`, the clock is `performance.now()`
//! (through `web-time`). There is one thread, so nothing here blocks.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_util::future::{AbortHandle as Abort, Abortable};

/// A spawned task's handle, as far as the driver uses it.
#[derive(Debug)]
pub(crate) struct JoinHandle {
    abort: Abort,
}

impl JoinHandle {
    /// A handle that stops the task.
    pub(crate) fn abort_handle(&self) -> AbortHandle {
        AbortHandle(self.abort.clone())
    }
}

/// Stops a spawned task (it is dropped at its next wake-up).
#[derive(Debug, Clone)]
pub(crate) struct AbortHandle(Abort);

impl AbortHandle {
    /// Stops the task.
    pub(crate) fn abort(&self) {
        self.0.abort();
    }
}

/// Runs `fut` on the page's event loop.
pub(crate) fn spawn<F>(fut: F) -> JoinHandle
where
    F: Future + 'static,
{
    let (abort, reg) = Abort::new_pair();
    wasm_bindgen_futures::spawn_local(async move {
        let _ = Abortable::new(fut, reg).await;
    });
    JoinHandle { abort }
}

/// Why a blocking closure did not return (never: it runs inline here).
#[derive(Debug)]
pub(crate) struct NoJoinError;

impl NoJoinError {
    pub(crate) fn is_panic(&self) -> bool {
        false
    }
    pub(crate) fn into_panic(self) -> Box<dyn std::any::Any + Send> {
        Box::new("no panic")
    }
}

/// There are no threads to block: `f` runs inline, on the event loop.
pub(crate) fn spawn_blocking<R>(
    f: impl FnOnce() -> R,
) -> std::future::Ready<Result<R, NoJoinError>> {
    std::future::ready(Ok(f()))
}

/// No runtime to block on in a page: blocking proxy calls are refused
/// (`Error::BlockingInAsync`).
#[derive(Debug, Clone)]
pub struct RuntimeHandle;

pub(crate) fn current_runtime() -> RuntimeHandle {
    RuntimeHandle
}

/// tokio's `time` module, on the browser's clock and timers.
pub(crate) mod time {
    use super::*;
    use std::time::Duration;

    /// A point in time (`performance.now()`), with tokio's API.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Instant(web_time::Instant);

    impl Instant {
        /// Now.
        pub fn now() -> Instant {
            Instant(web_time::Instant::now())
        }
        pub(crate) fn from_std(i: web_time::Instant) -> Instant {
            Instant(i)
        }
        pub(crate) fn into_std(self) -> web_time::Instant {
            self.0
        }
        pub(crate) fn checked_add(&self, d: Duration) -> Option<Instant> {
            self.0.checked_add(d).map(Instant)
        }
        /// The time from `earlier` to this, or zero.
        pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
            self.0.saturating_duration_since(earlier.0)
        }
    }

    impl std::ops::Sub for Instant {
        type Output = Duration;
        fn sub(self, earlier: Instant) -> Duration {
            self.0.saturating_duration_since(earlier.0)
        }
    }

    impl std::ops::Add<Duration> for Instant {
        type Output = Instant;
        fn add(self, d: Duration) -> Instant {
            Instant(self.0 + d)
        }
    }

    /// The error of a [`timeout`] whose time ran out.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Elapsed;

    impl std::fmt::Display for Elapsed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("deadline has elapsed")
        }
    }

    /// What a timer shares with the `setTimeout` callbacks it scheduled.
    #[derive(Default)]
    struct Slot {
        waker: Option<Waker>,
        /// The deadline of the latest `setTimeout` still to fire.
        armed: Option<web_time::Instant>,
    }

    /// A future that is ready at a deadline. `Send`: the JavaScript
    /// callback is not kept here, only the shared slot it wakes.
    #[derive(Debug)]
    pub(crate) struct Sleep {
        deadline: Instant,
        slot: Arc<Mutex<Slot>>,
    }

    impl std::fmt::Debug for Slot {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Slot").field("armed", &self.armed).finish()
        }
    }

    /// The longest delay `setTimeout` takes (a longer one fires at once);
    /// a longer sleep re-arms when it wakes early.
    const MAX_DELAY_MS: f64 = 2_147_483_647.0;

    fn set_timeout(slot: &Arc<Mutex<Slot>>, at: web_time::Instant, ms: f64) {
        use wasm_bindgen::closure::Closure;
        use wasm_bindgen::{JsCast, JsValue};
        let weak = Arc::downgrade(slot);
        let fire = Closure::once_into_js(move || {
            if let Some(slot) = weak.upgrade() {
                let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
                if s.armed == Some(at) {
                    s.armed = None;
                }
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        });
        let global = js_sys::global();
        let f = js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(f) = f {
            let _ = f.call2(&global, &fire, &JsValue::from_f64(ms));
        }
    }

    impl Sleep {
        fn new(deadline: Instant) -> Sleep {
            Sleep {
                deadline,
                slot: Arc::default(),
            }
        }
        /// When it is ready.
        pub(crate) fn deadline(&self) -> Instant {
            self.deadline
        }
        /// Whether the deadline has passed (tokio's `Sleep::is_elapsed`).
        pub(crate) fn is_elapsed(&self) -> bool {
            web_time::Instant::now() >= self.deadline.0
        }
        /// Moves the deadline (tokio's `Sleep::reset`).
        pub(crate) fn reset(self: Pin<&mut Self>, deadline: Instant) {
            self.get_mut().deadline = deadline;
        }
    }

    impl Future for Sleep {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let now = web_time::Instant::now();
            let at = self.deadline.0;
            if now >= at {
                return Poll::Ready(());
            }
            let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            s.waker = Some(cx.waker().clone());
            // One timer per deadline: re-arm only when it moved earlier or
            // none is pending (a later one wakes, finds it early, re-arms).
            if s.armed.is_none_or(|armed| at < armed) {
                s.armed = Some(at);
                drop(s);
                // +1 ms: timers may fire a little before performance.now()
                // says the deadline passed.
                let ms = ((at - now).as_secs_f64() * 1000.0 + 1.0).min(MAX_DELAY_MS);
                set_timeout(&self.slot, at, ms);
            }
            Poll::Pending
        }
    }

    /// Ready after `d`.
    pub(crate) fn sleep(d: Duration) -> Sleep {
        let now = Instant::now();
        Sleep::new(
            now.checked_add(d)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        )
    }

    /// Ready at `deadline`.
    pub(crate) fn sleep_until(deadline: Instant) -> Sleep {
        Sleep::new(deadline)
    }

    pin_project_lite::pin_project! {
        /// `value`, or [`Elapsed`] if the deadline comes first.
        #[derive(Debug)]
        pub(crate) struct Timeout<F> {
            #[pin]
            value: F,
            #[pin]
            delay: Sleep,
        }
    }

    impl<F: Future> Future for Timeout<F> {
        type Output = Result<F::Output, Elapsed>;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let me = self.project();
            if let Poll::Ready(v) = me.value.poll(cx) {
                return Poll::Ready(Ok(v));
            }
            me.delay.poll(cx).map(|()| Err(Elapsed))
        }
    }

    /// `fut`, for at most `d`.
    pub(crate) fn timeout<F: Future>(d: Duration, fut: F) -> Timeout<F> {
        Timeout {
            value: fut,
            delay: sleep(d),
        }
    }

    /// `fut`, until `deadline`.
    pub(crate) fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Timeout<F> {
        Timeout {
            value: fut,
            delay: sleep_until(deadline),
        }
    }
}
