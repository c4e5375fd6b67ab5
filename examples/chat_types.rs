//! The `chat` example's one data type. The server is a
//! [`SharedVec<Message>`](remote_core::collections::SharedVec): no
//! interface of its own to write.

use remote_core::collections::RemoteList;
use remote_core::wire::Bounded;
use remote_core::Wire;

/// What a chat client talks to: the server's list of messages.
pub type Chat = dyn RemoteList<Message>;

// A generic interface instance: registered so the schema export and the
// policy checker see the chat server's root.
remote_core::register_interface!(Chat);

/// Longest user name, in bytes.
pub const MAX_USER: usize = 32;
/// Longest message text, in bytes.
pub const MAX_TEXT: usize = 1000;

/// One chat message. Its strings are bounded: a peer's oversized
/// message is refused when it is decoded, before the server stores it
/// (and `remote-policy` sees the bound).
#[derive(Debug, Clone, PartialEq, Eq, Wire)]
pub struct Message {
    /// Who wrote it.
    pub user: Bounded<String, MAX_USER>,
    /// What they wrote.
    pub text: Bounded<String, MAX_TEXT>,
}

impl Message {
    /// A message from `user`, each string cut to its bound.
    pub fn new(user: impl Into<String>, text: impl Into<String>) -> Self {
        Message {
            user: clip(user.into()),
            text: clip(text.into()),
        }
    }
}

/// Cuts `s` to at most `N` bytes, at a character boundary.
fn clip<const N: usize>(mut s: String) -> Bounded<String, N> {
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    Bounded::new(s).unwrap_or_default()
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.user.as_str(), self.text.as_str())
    }
}
