//! The poller a process's waiting readers share (`hang_up.rs`): one mio
//! poll instance on a thread of its own, told of each socket registered
//! with it only whether its peer closed or reset it.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use mio::unix::SourceFd;
use mio::{Events, Interest, Token};

/// What the poller tells one registration.
#[derive(Default)]
struct Seen {
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl Seen {
    /// Wakes the registration's task. A waker that panics (not tokio's)
    /// is kept from taking the poller's thread down with it, or, while
    /// that thread unwinds (`Stopping`), from aborting the process.
    fn wake(&self) {
        let wake = std::panic::AssertUnwindSafe(|| self.waker.wake());
        if std::panic::catch_unwind(wake).is_err() {
            tracing::warn!("a waker panicked on the poller that watches waiting connections");
        }
    }
}

/// The shared poller: its registry, and what each token tells.
struct Poller {
    registry: mio::Registry,
    seen: Mutex<HashMap<usize, Arc<Seen>>>,
    next: AtomicUsize,
    /// Its thread stopped: registrations would never be told of a close.
    dead: AtomicBool,
}

/// The process's poller, if started, and when a start was last tried.
struct Started {
    poller: Option<Arc<Poller>>,
    tried: Option<Instant>,
}

static STARTED: Mutex<Started> = Mutex::new(Started {
    poller: None,
    tried: None,
});

/// A poller that could not start (out of descriptors, say) is tried again
/// at most this often, by the waits that need it (each waiting reader
/// tries again this long after its try failed). (Its failure kept for
/// good, a peer that used up the descriptors before the first wait
/// turned the watch off for the life of the process: a red-team pass.)
pub(super) const RETRY: Duration = Duration::from_secs(1);

/// Starts the process's poller if it is not running (module doc of
/// `hang_up.rs`, `start_watching`).
pub(super) fn start() {
    let _ = Poller::get();
}

impl Poller {
    fn seen(&self) -> MutexGuard<'_, HashMap<usize, Arc<Seen>>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process's poller, started on first use, or again if it could
    /// not start or its thread stopped (`Err` meanwhile: then the socket is
    /// not watched).
    fn get() -> io::Result<Arc<Poller>> {
        let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(poller) = &started.poller {
            if !poller.dead.load(Ordering::Acquire) {
                return Ok(poller.clone());
            }
            started.poller = None;
        }
        if started.tried.is_some_and(|t| t.elapsed() < RETRY) {
            return Err(io::Error::other(
                "the hang-up poller could not start; tried again shortly",
            ));
        }
        started.tried = Some(Instant::now());
        match Poller::start() {
            Ok(poller) => {
                tracing::debug!("started the poller that watches waiting connections for a close");
                started.poller = Some(poller.clone());
                Ok(poller)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot start the poller that watches waiting connections for a close: {e}"
                );
                Err(e)
            }
        }
    }

    fn start() -> io::Result<Arc<Poller>> {
        let mut poll = mio::Poll::new()?;
        let poller = Arc::new(Poller {
            registry: poll.registry().try_clone()?,
            seen: Mutex::default(),
            next: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
        });
        let shared = Stopping(poller.clone());
        std::thread::Builder::new()
            .name("remote-hang-up".into())
            .spawn(move || {
                let shared = &shared.0;
                let mut events = Events::with_capacity(256);
                loop {
                    if let Err(e) = poll.poll(&mut events, None) {
                        if e.kind() == io::ErrorKind::Interrupted {
                            continue;
                        }
                        tracing::warn!("the poller that watches waiting connections stopped: {e}");
                        return;
                    }
                    for event in &events {
                        // More bytes only: not read here.
                        if !(event.is_read_closed() || event.is_error()) {
                            continue;
                        }
                        let seen = shared.seen().get(&event.token().0).cloned();
                        if let Some(seen) = seen {
                            seen.closed.store(true, Ordering::Release);
                            seen.wake();
                        }
                    }
                }
            })?;
        Ok(poller)
    }
}

/// Held by the poller's thread: however it ends (an error, or a panic),
/// the poller is marked stopped and every registration's task
/// woken, to register again with the poller that replaces it.
struct Stopping(Arc<Poller>);

impl Drop for Stopping {
    fn drop(&mut self) {
        self.0.dead.store(true, Ordering::Release);
        let seen: Vec<Arc<Seen>> = self.0.seen().values().cloned().collect();
        for seen in seen {
            seen.wake();
        }
    }
}

/// A socket registered with the shared poller, taken off when dropped.
pub(super) struct Registered {
    poller: Arc<Poller>,
    fd: RawFd,
    token: usize,
    seen: Arc<Seen>,
}

impl Registered {
    /// Registers `fd`, which must stay open until this is dropped (the
    /// reader that owns it outlives the [`Watch`](super::Watch) holding
    /// this).
    pub(super) fn new(fd: BorrowedFd<'_>) -> io::Result<Registered> {
        let poller = Poller::get()?;
        let token = poller.next.fetch_add(1, Ordering::Relaxed);
        let seen = Arc::new(Seen::default());
        poller.seen().insert(token, seen.clone());
        let fd = fd.as_raw_fd();
        // Edge-triggered (mio's only mode): a close that came before this
        // is reported at once, as the socket is ready then.
        let registered =
            poller
                .registry
                .register(&mut SourceFd(&fd), Token(token), Interest::READABLE);
        if let Err(e) = registered {
            poller.seen().remove(&token);
            return Err(e);
        }
        Ok(Registered {
            poller,
            fd,
            token,
            seen,
        })
    }

    /// Its poller's thread has stopped: nothing will tell this of a close.
    pub(super) fn poller_stopped(&self) -> bool {
        self.poller.dead.load(Ordering::Acquire)
    }

    /// `Ready` once the peer closed or reset the connection.
    pub(super) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.seen.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.seen.waker.register(cx.waker());
        if self.seen.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Still open (see `new`): taken off this socket only.
        let _ = self.poller.registry.deregister(&mut SourceFd(&self.fd));
        self.poller.seen().remove(&self.token);
    }
}
