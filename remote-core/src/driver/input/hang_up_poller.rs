//! The poller a process's waiting readers share (`hang_up.rs`): one mio
//! poll instance on a thread of its own, told of each socket registered
//! with it only whether its peer closed or reset it.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use mio::unix::SourceFd;
use mio::{Events, Interest, Token};

/// What the poller tells one registration.
#[derive(Default)]
struct Seen {
    closed: AtomicBool,
    waker: AtomicWaker,
}

/// The shared poller: its registry, and what each token tells.
struct Poller {
    registry: mio::Registry,
    seen: Mutex<HashMap<usize, Arc<Seen>>>,
    next: AtomicUsize,
}

impl Poller {
    fn seen(&self) -> MutexGuard<'_, HashMap<usize, Arc<Seen>>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process's poller, started on first use (`Err` if it could not
    /// be: then no socket is watched).
    fn get() -> io::Result<&'static Poller> {
        static POLLER: OnceLock<Result<Poller, io::ErrorKind>> = OnceLock::new();
        let poller = POLLER.get_or_init(|| Poller::start().map_err(|e| e.kind()));
        poller.as_ref().map_err(|&kind| io::Error::from(kind))
    }

    fn start() -> io::Result<Poller> {
        let mut poll = mio::Poll::new()?;
        let poller = Poller {
            registry: poll.registry().try_clone()?,
            seen: Mutex::default(),
            next: AtomicUsize::new(0),
        };
        std::thread::Builder::new()
            .name("remote-hang-up".into())
            .spawn(move || {
                let mut events = Events::with_capacity(256);
                loop {
                    if let Err(e) = poll.poll(&mut events, None) {
                        if e.kind() == io::ErrorKind::Interrupted {
                            continue;
                        }
                        tracing::error!("the hang-up poller stopped: {e}");
                        return;
                    }
                    let Ok(poller) = Poller::get() else { return };
                    for event in &events {
                        // More bytes only: not read here.
                        if !(event.is_read_closed() || event.is_error()) {
                            continue;
                        }
                        let seen = poller.seen().get(&event.token().0).cloned();
                        if let Some(seen) = seen {
                            seen.closed.store(true, Ordering::Release);
                            seen.waker.wake();
                        }
                    }
                }
            })?;
        Ok(poller)
    }
}

/// A socket registered with the shared poller, taken off when dropped.
pub(super) struct Registered {
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
        Ok(Registered { fd, token, seen })
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
        if let Ok(poller) = Poller::get() {
            // Still open (see `new`): taken off this socket only.
            let _ = poller.registry.deregister(&mut SourceFd(&self.fd));
            poller.seen().remove(&self.token);
        }
    }
}
