//! Panics in handlers: the message and, when backtraces are enabled, the
//! backtrace of a panicking handler, for its remote error.

use crate::RemoteError;

thread_local! {
    static PANIC_BACKTRACE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Chains a panic hook (once per process) that keeps the backtrace of a
/// panic on this thread, when backtraces are enabled (`RUST_BACKTRACE`), so
/// a panicking handler's remote error can carry it. The previous hook still
/// runs.
pub(super) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let bt = std::backtrace::Backtrace::capture();
            if bt.status() == std::backtrace::BacktraceStatus::Captured {
                PANIC_BACKTRACE.with(|b| *b.borrow_mut() = Some(bt.to_string()));
            }
            prev(info);
        }));
    });
}

pub(crate) fn panic_error(panic: Box<dyn std::any::Any + Send>) -> RemoteError {
    let msg = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    let mut e = RemoteError::new("panic", "panic", msg);
    e.backtrace = PANIC_BACKTRACE.with(|b| b.borrow_mut().take());
    e
}
