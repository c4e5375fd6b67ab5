//! What a weighed decode that was stopped ([`Taken::stop`]) is answered
//! with: the error's text, the limit it names, and that limit's value.

use super::{Stop, Taken, ATTEMPTS_PER_NODE, MAX_NESTED};

/// The error for a call whose decode was stopped ([`Taken::stop`]);
/// `e` is the decode's error, if it failed (serde's untagged enums try
/// another variant after an error, which may decode: the call is refused
/// all the same, not run with that variant).
pub(crate) fn refusal(method: &str, e: Option<&crate::Error>, taken: &Taken) -> crate::RemoteError {
    let what = format!("the arguments of {}", crate::bounded::quote(method));
    crate::RemoteError::new(
        "limit_exceeded",
        "remote_core::Error",
        refusal_text(&what, e, taken),
    )
}

/// What a refusal says: `what` (the arguments of a call, a reply to one)
/// decoded past the bound [`Taken::stop`] names.
pub(crate) fn refusal_text(what: &str, e: Option<&crate::Error>, taken: &Taken) -> String {
    let why = e.map_or_else(String::new, |e| format!(": {e}"));
    match taken.stop {
        Some(Stop::Time) => format!(
            "decoding {what}, nested untagged or internally tagged types took more than {} ms \
             of CPU time in their tries, plus {} ns per item of their buffer (serde copies a \
             nested such value for each variant it tries){why}",
            super::super::work::BASE.as_millis(),
            super::super::work::PER_NODE.as_nanos(),
        ),
        Some(Stop::Tries) => format!(
            "decoding {what}, untagged or internally tagged types were tried more than \
             {ATTEMPTS_PER_NODE} times per item of their buffer (serde tries each variant in \
             turn, and nested such types multiply the tries){why}"
        ),
        Some(Stop::Nesting) => format!(
            "decoding {what}, untagged or internally tagged types nested more than \
             {MAX_NESTED} deep in one another (a type that decodes itself from its own \
             buffer, as a left-recursive untagged enum does, never ends){why}"
        ),
        Some(Stop::Budget) | None => format!(
            "decoding {what} came to more than it was counted at, and the memory_budget has \
             no room for it{why}"
        ),
    }
}

/// The value of the limit a refusal names ([`refusal_limit`]), for an
/// [`Error::LimitExceeded`](crate::Error::LimitExceeded): `budget` is the
/// memory budget's.
pub(crate) fn refusal_value(taken: &Taken, budget: usize) -> u64 {
    match taken.stop {
        Some(Stop::Time) => super::super::work::BASE.as_millis() as u64,
        Some(Stop::Tries) => ATTEMPTS_PER_NODE as u64,
        Some(Stop::Nesting) => MAX_NESTED as u64,
        Some(Stop::Budget) | None => budget as u64,
    }
}

/// The limit a refusal names, for the meter.
pub(crate) fn refusal_limit(taken: &Taken) -> &'static str {
    match taken.stop {
        Some(Stop::Time) => "buffered_decode_time",
        Some(Stop::Tries) => "buffered_decode_attempts",
        Some(Stop::Nesting) => "buffered_decode_nesting",
        Some(Stop::Budget) | None => "memory_budget",
    }
}
