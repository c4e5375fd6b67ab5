//! The authentication exchange on a live connection: reads the proof
//! frames after the hellos and decides (driver glue for [`super::proto`]).

use std::any::Any;
use std::sync::Arc;

use crate::rt::time::Instant;
use bytes::Bytes;

use super::proto::{self, HelloAuth, Role, Transcript, MAX_USER_LEN, NONCE_LEN};
use super::{Side, REFUSED};
use crate::driver::{Input, Shared};
use crate::proto::{FrameError, Message};
use crate::Error;

/// Who the peer proved to be: its user name and the authenticator's
/// identity for it.
pub(crate) type Proven = (String, Arc<dyn Any + Send + Sync>);

/// The `auth` slot of our hello.
pub(crate) fn hello_slot(side: &Side, nonce: &[u8; NONCE_LEN]) -> Option<Vec<u8>> {
    match side {
        Side::Open => None,
        Side::Prove { user, .. } => Some(proto::credentials(nonce, user)),
        Side::Verify(_) => Some(proto::challenge(nonce)),
    }
}

/// Runs the exchange after both hellos: `Ok(Some(..))` if the peer proved
/// who it is, `Ok(None)` if this side did not ask. `binding` is the
/// transport's channel binding (the TLS session's `tls-exporter` value,
/// empty on plain transports), covered by both proofs. Every refusal is
/// preceded by a goodbye naming it.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    input: &mut Input,
    side: &Side,
    our_nonce: &[u8; NONCE_LEN],
    peer_slot: Option<&[u8]>,
    binding: &[u8],
    deadline: Instant,
) -> Result<Option<Proven>, Error> {
    let peer = proto::parse_hello_auth(peer_slot);
    match side {
        Side::Open => match peer {
            HelloAuth::Challenge(_) => Err(refuse(
                shared,
                "authentication failed: the peer requires credentials and this side has none",
            )),
            HelloAuth::Credentials { .. } => Err(refuse(
                shared,
                "authentication failed: the peer offered credentials but this side does not check them",
            )),
            // Nothing asked; junk in an unused slot is ignored.
            HelloAuth::None | HelloAuth::Malformed => Ok(None),
        },
        Side::Prove { user, key } => {
            let HelloAuth::Challenge(server_nonce) = peer else {
                return Err(refuse(
                    shared,
                    "authentication failed: the peer did not send a challenge, so it cannot \
                     prove it knows the key",
                ));
            };
            let t = Transcript {
                user,
                client_nonce: our_nonce,
                server_nonce: &server_nonce,
                binding,
            };
            let frame = next(shared, input, deadline).await?;
            let Some(theirs) = proto::parse_proof(&frame) else {
                return Err(refuse(
                    shared,
                    "authentication failed: expected the peer's proof (kind 9) after its hello",
                ));
            };
            if !proto::verify(key.bytes(), Role::Server, &t, &theirs) {
                return Err(refuse(
                    shared,
                    "authentication failed: the peer did not prove it knows the key \
                     (wrong key, unknown user, or an impostor)",
                ));
            }
            shared.send(&proto::proof_frame(&proto::proof(key.bytes(), Role::Client, &t)))?;
            Ok(None)
        }
        Side::Verify(lookup) => {
            let (client_nonce, user) = match peer {
                HelloAuth::Credentials { nonce, user } => (nonce, user),
                HelloAuth::None => {
                    return Err(refuse(
                        shared,
                        "authentication failed: credentials required and the peer sent none",
                    ))
                }
                HelloAuth::Challenge(_) => {
                    return Err(refuse(
                        shared,
                        "authentication failed: both sides asked for credentials",
                    ))
                }
                HelloAuth::Malformed => {
                    let why = format!(
                        "authentication failed: malformed credentials in the hello \
                         (expected a tag byte, a {NONCE_LEN}-byte nonce and a user name of \
                         at most {MAX_USER_LEN} bytes of UTF-8; bearer tokens are no longer \
                         accepted)"
                    );
                    return Err(refuse(shared, &why));
                }
            };
            // An unknown user gets a proof under a random key: the same
            // work, the same messages, the same refusal as a wrong key.
            // A panicking lookup refuses like an unknown user.
            let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lookup(&user)));
            let (key, identity) = match found {
                Ok(Some((key, identity))) => (key, Some(identity)),
                Ok(None) | Err(_) => (super::Key::random()?, None),
            };
            let t = Transcript {
                user: &user,
                client_nonce: &client_nonce,
                server_nonce: our_nonce,
                binding,
            };
            shared.send(&proto::proof_frame(&proto::proof(key.bytes(), Role::Server, &t)))?;
            let frame = next(shared, input, deadline).await?;
            let proven = proto::parse_proof(&frame)
                .is_some_and(|p| proto::verify(key.bytes(), Role::Client, &t, &p));
            match identity {
                Some(identity) if proven => Ok(Some((user, identity))),
                _ => Err(refuse(shared, REFUSED)),
            }
        }
    }
}

/// Says goodbye with `why`; the error to return.
fn refuse(shared: &Shared, why: &str) -> Error {
    let _ = shared.send_goodbye(why);
    Error::Handshake(why.to_owned())
}

/// The next frame before `deadline` (a goodbye becomes the peer's refusal).
async fn next(shared: &Shared, input: &mut Input, deadline: Instant) -> Result<Bytes, Error> {
    let frame = match crate::rt::time::timeout_at(deadline, input.next(false)).await {
        Err(_) => {
            let limit = shared.limits.handshake_timeout;
            return Err(refuse(
                shared,
                &format!("authentication did not complete within handshake_timeout = {limit:?}"),
            ));
        }
        Ok(None) => {
            return Err(Error::Handshake(
                "peer closed the connection during authentication".into(),
            ))
        }
        Ok(Some(Err(FrameError::TooLarge { len, max }))) => {
            return Err(refuse(
                shared,
                &format!("handshake frame of {len} bytes exceeds max_handshake_frame_len = {max}"),
            ))
        }
        Ok(Some(Err(FrameError::Io(e)))) => {
            return Err(Error::Handshake(format!("i/o error: {e}")))
        }
        Ok(Some(Ok(frame))) => frame,
    };
    input.frame_done();
    let mut found = Vec::new();
    if let Ok(Message::Goodbye { reason }) = Message::parse(&frame, &shared.limits, &mut found) {
        return Err(Error::Handshake(format!(
            "peer refused the connection: {reason}"
        )));
    }
    Ok(frame)
}
