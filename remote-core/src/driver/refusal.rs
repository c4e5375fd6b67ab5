//! A transport's refusal of what the peer sent: the reader tells the peer
//! why, as it does for a frame it refuses itself.

use std::fmt;
use std::io;

/// Why a transport refused what the peer sent (a WebSocket message over a
/// limit, or against the protocol), carried by the `io::Error` (kind
/// `InvalidData`) its read fails with ([`refusal`]). The reader sends a
/// goodbye naming it and drains what the peer still sends, as for a frame
/// it refuses itself; other read errors (a TLS record that does not
/// decrypt, a reset) close at once, as before: they are no message a
/// peer could read (a red-team pass found a corrupt TLS record, matched as
/// `InvalidData`, holding its socket for the 5 s drain).
#[derive(Debug)]
pub(crate) struct Refusal(String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// A read error refusing what the peer sent, for `why`.
#[cfg_attr(not(feature = "websocket"), allow(dead_code))]
pub(crate) fn refusal(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Refusal(why.into()))
}

/// Whether `e` is a [`refusal`].
pub(crate) fn is_refusal(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Refusal>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_told_from_other_invalid_data() {
        let e = refusal("protocol violation: a text websocket message");
        assert!(is_refusal(&e));
        assert_eq!(
            e.to_string(),
            "protocol violation: a text websocket message"
        );
        assert!(!is_refusal(&io::Error::new(
            io::ErrorKind::InvalidData,
            "received corrupt message"
        )));
        assert!(!is_refusal(&io::Error::other("reset")));
    }
}
