//! What a kept answer (`pipeline.rs`) holds of its call's error, and the
//! errors calls on an answer fail with: a full answer keeps a cut copy
//! ([`kept_error`]); a slim one only its kind, or its limit's name, in an
//! error shared per kind or name.

use std::sync::{Arc, Mutex};

use super::shared::lock;
use crate::proto::CallId;
use crate::RemoteError;

/// The most of each text field of a failed call's error its kept answer
/// holds (PROTOCOL.md §3.10).
const KEPT_ERROR_FIELD: usize = 1024;

/// What a kept answer holds of its call's error `e`, and so what calls on
/// the answer fail with: the kind, the type and the message (each cut to
/// [`KEPT_ERROR_FIELD`] bytes) and the first four causes (cut to 256
/// bytes each); no backtrace, and no `data` (error replies to calls on an
/// answer never carried it). So a kept answer holds about 3 KiB at most,
/// whatever the error: it held the whole error until the peer's finish,
/// and a peer whose callback failed with 900 KiB of `data`, the handler
/// passing the error on, made each of its kept answers hold a copy,
/// counted nowhere (420 MiB held by 4 connections, found by a red-team
/// pass). A caller whose promise failed before its calls on it were sent
/// fails them with the same (`promise.rs`): with the whole error, `data`
/// included, each such call made its own copy, 200 calls on a promise
/// failed with 1 MB of `data` holding 200 MB (red-team pass 19).
pub(crate) fn kept_error(e: &RemoteError) -> RemoteError {
    // Cut at a character boundary and marked, as error texts are (§3.4);
    // no spare capacity (`format!`'s cut held up to twice its text, so a
    // kept answer about 4.3 KB instead of 2.3).
    let cut = |s: &str, max: usize| {
        let mut s = crate::bounded::truncate(s, max).into_owned();
        s.shrink_to_fit();
        s
    };
    let mut kept = RemoteError::new(
        &cut(&e.kind, 64),
        &cut(&e.type_name, 256),
        cut(&e.message, KEPT_ERROR_FIELD),
    );
    kept.chain = e.chain.iter().take(4).map(|c| cut(c, 256)).collect();
    kept
}

/// What a slim kept answer (`proto/state/answers.rs`) holds of its call's
/// error: its kind, and a message saying the rest was not kept, in one
/// error shared by every slim answer of that kind. A kind this runtime
/// does not raise itself (one a peer chose, passed on by a handler) is
/// kept as `application`: its own copy per answer held about 540 bytes,
/// the peer choosing its length.
pub(super) fn slim_error(kind: &str) -> Arc<RemoteError> {
    use crate::stats::ERROR_KINDS;
    use std::sync::OnceLock;
    /// Kinds the runtime raises that the counters count as `"other"`.
    const MORE: [&str; 3] = ["not_a_capability", "remote", "wrong_interface"];
    const N: usize = ERROR_KINDS.len() + MORE.len();
    static SHARED: [OnceLock<Arc<RemoteError>>; N] = [const { OnceLock::new() }; N];
    let mut kinds = ERROR_KINDS.iter().chain(MORE.iter());
    // `ERROR_KINDS[0]` is `application`.
    let (i, kind) = kinds
        .position(|k| *k == kind)
        .map_or((0, ERROR_KINDS[0]), |i| (i, kind));
    SHARED[i]
        .get_or_init(|| {
            Arc::new(RemoteError::new(
                kind,
                "remote_core::Error",
                "the kept call failed; its error was not kept, only its kind: the server \
                 keeps at most max_kept_answers answers in full (PROTOCOL.md §3.10)"
                    .to_owned(),
            ))
        })
        .clone()
}

/// A slim answer's error for `e` ([`slim_error`]): a `limit_exceeded` one
/// keeps the name of its limit too, so [`Error::limit_name`] still tells
/// it (found by a red-team pass), in one error shared per limit
/// ([`slim_limit`]).
pub(super) fn slim_of(e: &RemoteError) -> Arc<RemoteError> {
    if e.kind == "limit_exceeded" {
        if let Some(slim) = crate::error::limit_in(&e.message).and_then(slim_limit) {
            return slim;
        }
    }
    slim_error(&e.kind)
}

/// The slim error of a `limit_exceeded` naming limit `name`: one per name,
/// for at most [`SLIM_LIMITS`] names in the process. A name must look like
/// a [`Limits`](crate::Limits) field (lowercase letters, digits and `_`,
/// 48 bytes at most): one a peer chose and a handler passed on may be
/// anything. Past that, or for such a name, `None` (the kind's).
fn slim_limit(name: &str) -> Option<Arc<RemoteError>> {
    static SHARED: Mutex<Vec<Arc<RemoteError>>> = Mutex::new(Vec::new());
    let looks_like_a_limit = !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !looks_like_a_limit {
        return None;
    }
    // The toolkit's own limits always keep their names: the table of
    // other names fills with whatever a peer's errors named (a red-team
    // pass: 64 names like `fake_1` took every place, for the process's
    // life).
    if let Some(i) = TOOLKIT_LIMITS.iter().position(|&l| l == name) {
        static OWN: std::sync::OnceLock<Vec<Arc<RemoteError>>> = std::sync::OnceLock::new();
        let own = OWN.get_or_init(|| TOOLKIT_LIMITS.iter().map(|l| slim_limit_error(l)).collect());
        return Some(own[i].clone());
    }
    let mut shared = lock(&SHARED);
    let known = shared
        .iter()
        .find(|e| crate::error::limit_in(&e.message) == Some(name));
    if let Some(e) = known {
        return Some(e.clone());
    }
    if shared.len() >= SLIM_LIMITS {
        return None;
    }
    let e = slim_limit_error(name);
    shared.push(e.clone());
    Some(e)
}

/// The slim error of a `limit_exceeded` naming `name`.
fn slim_limit_error(name: &str) -> Arc<RemoteError> {
    Arc::new(RemoteError::new(
        "limit_exceeded",
        "remote_core::Error",
        format!(
            "limit exceeded: {name} = ? (the kept call failed; its error was not kept, only \
             its kind and limit: the server keeps at most max_kept_answers answers in full, \
             PROTOCOL.md §3.10)"
        ),
    ))
}

/// Other limit names [`slim_limit`] keeps an error for.
const SLIM_LIMITS: usize = 64;

/// The limits this crate names in its errors (the [`Limits`](crate::Limits)
/// fields, and the bounds on decoding serde's buffered types): their slim
/// errors are always kept. A limit missing here is kept among the others.
const TOOLKIT_LIMITS: &[&str] = &[
    "max_frame_len",
    "max_handshake_frame_len",
    "max_depth",
    "max_calls_in_flight",
    "max_outgoing_calls",
    "max_exports",
    "max_server_exports",
    "max_exports_per_peer",
    "max_kept_answers",
    "max_kept_answers_per_peer",
    "max_imports",
    "max_connections",
    "max_connections_per_peer",
    "max_blocking_calls",
    "max_server_blocking_calls",
    "max_blocking_calls_per_peer",
    "max_running_handlers",
    "max_write_queue",
    "memory_budget",
    "default_deadline",
    "max_deadline",
    "max_subscriptions_per_connection",
    "buffered_decode_time",
    "buffered_decode_attempts",
    "buffered_decode_nesting",
];

/// The error of a call on a slim kept answer whose object the peer
/// released: one, shared.
pub(super) fn released() -> Arc<RemoteError> {
    static RELEASED: std::sync::OnceLock<Arc<RemoteError>> = std::sync::OnceLock::new();
    RELEASED
        .get_or_init(|| {
            Arc::new(RemoteError::new(
                "unknown_object",
                "remote_core::Error",
                "the kept answer's object was released by the caller: past max_kept_answers \
                 an answer does not keep its object alive (PROTOCOL.md §3.10)"
                    .to_owned(),
            ))
        })
        .clone()
}

/// The error of a call answering with a value that is not one object.
pub(super) fn not_a_capability(message: String) -> RemoteError {
    RemoteError::new("not_a_capability", "remote_core::Error", message)
}

/// The answer of a kept-answer call that ended without a reply of its own.
pub(super) fn ended(id: CallId) -> RemoteError {
    RemoteError::new(
        "cancelled",
        "remote_core::Error",
        format!("call {id} ended without an answer (it was cancelled or stopped)"),
    )
}

#[cfg(test)]
mod tests {
    use super::slim_error;

    /// A slim answer keeps a kind the runtime raises as it is, and any
    /// other as `application`, in one error shared per kind.
    #[test]
    fn slim_errors_keep_known_kinds_and_are_shared() {
        for kind in ["bad_arguments", "application", "not_a_capability", "io"] {
            let e = slim_error(kind);
            assert_eq!(e.kind, kind);
            assert!(std::sync::Arc::ptr_eq(&e, &slim_error(kind)));
        }
        let other = slim_error(&"k".repeat(64));
        assert_eq!(other.kind, "application");
        assert!(std::sync::Arc::ptr_eq(&other, &slim_error("application")));
    }

    /// A slim `limit_exceeded` keeps its limit's name, shared per name; a
    /// name that does not look like a limit gets the kind's error.
    #[test]
    fn slim_limit_errors_keep_the_limit() {
        use super::slim_of;
        use crate::{Error, RemoteError};
        let hit = |message: &str| {
            RemoteError::new("limit_exceeded", "remote_core::Error", message.to_owned())
        };
        let full = hit("limit exceeded: max_frame_len = 1048576 (frame of 2000000 bytes)");
        let slim = slim_of(&full);
        assert!(!std::sync::Arc::ptr_eq(
            &slim,
            &super::slim_error("limit_exceeded")
        ));
        let e = Error::Remote(Box::new((*slim).clone()));
        assert!(e.is_limit());
        assert_eq!(e.limit_name(), Some("max_frame_len"));
        assert!(std::sync::Arc::ptr_eq(&slim, &slim_of(&full)));
        let odd = slim_of(&hit("limit exceeded: Not A Limit = 3"));
        assert!(std::sync::Arc::ptr_eq(
            &odd,
            &super::slim_error("limit_exceeded")
        ));
        assert_eq!(Error::Remote(Box::new((*odd).clone())).limit_name(), None);
    }

    /// Names a peer chose fill the table of other names, not the
    /// toolkit's own (red-team pass 47: after 64 names like `fake_1`, a
    /// slim `memory_budget` error lost its name for the process's life).
    #[test]
    fn the_toolkits_limits_keep_their_names_past_a_peers_names() {
        use super::slim_of;
        use crate::{Error, RemoteError};
        let hit = |name: &str| {
            let message = format!("limit exceeded: {name} = 1 (peer)");
            slim_of(&RemoteError::new("limit_exceeded", "x", message))
        };
        for i in 0..=super::SLIM_LIMITS {
            hit(&format!("fake_{i}"));
        }
        let extra = Error::Remote(Box::new((*hit("fake_past_the_table")).clone()));
        assert_eq!(extra.limit_name(), None, "the table of other names is full");
        for name in [
            "memory_budget",
            "max_calls_in_flight",
            "buffered_decode_time",
        ] {
            let e = Error::Remote(Box::new((*hit(name)).clone()));
            assert_eq!(e.limit_name(), Some(name));
        }
    }
}
