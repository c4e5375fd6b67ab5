//! Silences the output of the panics tests make on purpose, so a passing run
//! prints no panic message or backtrace. Panics whose message contains
//! [`DELIBERATE`] are dropped; every other panic is reported as before.
//!
//! The hook is process-wide, installed once, and decides by the message
//! alone, so it is safe with tests running in parallel: a real failure in
//! another test still prints.

use std::sync::Once;

/// The marker a deliberate panic's message carries.
pub(crate) const DELIBERATE: &str = "(deliberate test panic)";

/// Installs the filtering hook (once per process) in front of the current one.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if msg.is_some_and(|m| m.contains(DELIBERATE)) {
                return;
            }
            prev(info);
        }));
    });
}
