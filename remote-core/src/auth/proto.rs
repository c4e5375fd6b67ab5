//! The challenge-response exchange, sans I/O: what goes in the hello's
//! `auth` slot, the proof frame, and what each proof is computed over
//! (PROTOCOL.md §7.1 specifies the bytes).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::proto::encode;

/// Bytes in a nonce and in a proof.
pub(crate) const NONCE_LEN: usize = 32;
/// Bytes in a proof (an HMAC-SHA256 tag).
pub(crate) const PROOF_LEN: usize = 32;
/// The message kind of a proof frame (only valid during the handshake).
pub(crate) const PROOF_KIND: u8 = 9;
/// Longest user name, in bytes of UTF-8.
pub(crate) const MAX_USER_LEN: usize = 255;

const CHALLENGE_TAG: u8 = 1;
const CREDENTIALS_TAG: u8 = 2;
const DOMAIN: &[u8] = b"remote auth v1";

/// Which side computes a proof: the one that proves its credentials
/// ("client") or the one that checks them ("server"). The label is part of
/// the MAC input, so a proof never verifies for the other role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Sent credentials in its hello, proves second.
    Client,
    /// Sent a challenge in its hello, proves first.
    Server,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Client => b"client",
            Role::Server => b"server",
        }
    }
}

/// What a peer put in its hello's `auth` slot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HelloAuth {
    /// `nil`: neither asks for nor offers credentials.
    None,
    /// `0x01 || nonce`: the sender requires the peer to authenticate.
    Challenge([u8; NONCE_LEN]),
    /// `0x02 || nonce || user`: the sender offers to prove it holds the
    /// key of `user`.
    Credentials {
        /// The sender's nonce.
        nonce: [u8; NONCE_LEN],
        /// The user name (UTF-8, at most 255 bytes).
        user: String,
    },
    /// Anything else (e.g. an old-style bearer token): refused.
    Malformed,
}

/// A fresh random nonce from the operating system's generator.
pub(crate) fn nonce() -> Result<[u8; NONCE_LEN], getrandom::Error> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n)?;
    Ok(n)
}

/// The `auth` slot of a challenging hello.
pub(crate) fn challenge(nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + NONCE_LEN);
    v.push(CHALLENGE_TAG);
    v.extend_from_slice(nonce);
    v
}

/// The `auth` slot of a hello offering credentials for `user`.
pub(crate) fn credentials(nonce: &[u8; NONCE_LEN], user: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + NONCE_LEN + user.len());
    v.push(CREDENTIALS_TAG);
    v.extend_from_slice(nonce);
    v.extend_from_slice(user.as_bytes());
    v
}

/// Reads the peer's `auth` slot.
pub(crate) fn parse_hello_auth(slot: Option<&[u8]>) -> HelloAuth {
    let Some(slot) = slot else {
        return HelloAuth::None;
    };
    let Some((&tag, rest)) = slot.split_first() else {
        return HelloAuth::Malformed;
    };
    if rest.len() < NONCE_LEN {
        return HelloAuth::Malformed;
    }
    let (n, tail) = rest.split_at(NONCE_LEN);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(n);
    match tag {
        CHALLENGE_TAG if tail.is_empty() => HelloAuth::Challenge(nonce),
        CREDENTIALS_TAG if tail.len() <= MAX_USER_LEN => match std::str::from_utf8(tail) {
            Ok(user) => HelloAuth::Credentials {
                nonce,
                user: user.to_owned(),
            },
            Err(_) => HelloAuth::Malformed,
        },
        _ => HelloAuth::Malformed,
    }
}

/// Everything a proof is bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transcript<'a> {
    /// The user the client claims to be.
    pub(crate) user: &'a str,
    /// The client's nonce (from its hello).
    pub(crate) client_nonce: &'a [u8; NONCE_LEN],
    /// The server's nonce (from its hello).
    pub(crate) server_nonce: &'a [u8; NONCE_LEN],
    /// Channel binding (e.g. a TLS exporter value); empty for none.
    pub(crate) binding: &'a [u8],
}

/// `HMAC-SHA256(key, "remote auth v1" 0x00 role 0x00 len(user) user
/// client_nonce server_nonce len16(binding) binding)`.
pub(crate) fn proof(key: &[u8], role: Role, t: &Transcript<'_>) -> [u8; PROOF_LEN] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(DOMAIN);
    mac.update(&[0]);
    mac.update(role.label());
    mac.update(&[0]);
    // Both lengths are bounded: the user name by MAX_USER_LEN, the binding
    // by its source (an exporter value of a fixed size).
    mac.update(&[u8::try_from(t.user.len()).unwrap_or(u8::MAX)]);
    mac.update(t.user.as_bytes());
    mac.update(t.client_nonce);
    mac.update(t.server_nonce);
    mac.update(
        &u16::try_from(t.binding.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    mac.update(t.binding);
    mac.finalize().into_bytes().into()
}

/// Whether `got` is the proof `role` must send for `t` under `key`, in
/// constant time.
pub(crate) fn verify(key: &[u8], role: Role, t: &Transcript<'_>, got: &[u8; PROOF_LEN]) -> bool {
    proof(key, role, t).ct_eq(got).into()
}

/// A complete proof frame: `[9, bin(32)]`.
pub(crate) fn proof_frame(p: &[u8; PROOF_LEN]) -> Vec<u8> {
    let mut b = encode::begin(4 + 3 + PROOF_LEN);
    // fixarray(2), positive fixint 9, bin8 of 32 bytes.
    b.extend_from_slice(&[0x92, PROOF_KIND, 0xc4, PROOF_LEN as u8]);
    b.extend_from_slice(p);
    encode::finish(&mut b);
    b
}

/// The proof in a proof frame's payload, or `None` if it is anything else.
pub(crate) fn parse_proof(payload: &[u8]) -> Option<[u8; PROOF_LEN]> {
    let rest = payload.strip_prefix(&[0x92, PROOF_KIND, 0xc4, PROOF_LEN as u8])?;
    rest.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(cn: &'a [u8; 32], sn: &'a [u8; 32]) -> Transcript<'a> {
        Transcript {
            user: "alice",
            client_nonce: cn,
            server_nonce: sn,
            binding: b"",
        }
    }

    #[test]
    fn hello_slots_round_trip_and_junk_is_malformed() {
        let n = [7u8; 32];
        assert_eq!(
            parse_hello_auth(Some(&challenge(&n))),
            HelloAuth::Challenge(n)
        );
        assert_eq!(
            parse_hello_auth(Some(&credentials(&n, "bob"))),
            HelloAuth::Credentials {
                nonce: n,
                user: "bob".into()
            }
        );
        assert_eq!(parse_hello_auth(None), HelloAuth::None);
        // An old-style bearer token, a short nonce, a long name, bad UTF-8.
        assert_eq!(parse_hello_auth(Some(b"open sesame")), HelloAuth::Malformed);
        assert_eq!(parse_hello_auth(Some(&[1; 20])), HelloAuth::Malformed);
        assert_eq!(
            parse_hello_auth(Some(&credentials(&n, &"x".repeat(256)))),
            HelloAuth::Malformed
        );
        let mut bad = credentials(&n, "");
        bad.push(0xff);
        assert_eq!(parse_hello_auth(Some(&bad)), HelloAuth::Malformed);
        // A challenge carries nothing after its nonce.
        let mut long = challenge(&n);
        long.push(b'x');
        assert_eq!(parse_hello_auth(Some(&long)), HelloAuth::Malformed);
    }

    #[test]
    fn a_proof_is_bound_to_key_role_user_nonces_and_binding() {
        let (cn, sn) = ([1u8; 32], [2u8; 32]);
        let base = t(&cn, &sn);
        let p = proof(b"key", Role::Client, &base);
        assert!(verify(b"key", Role::Client, &base, &p));
        assert!(!verify(b"other key", Role::Client, &base, &p));
        // Reflected: a client proof is not a server proof.
        assert!(!verify(b"key", Role::Server, &base, &p));
        let other_user = Transcript {
            user: "mallory",
            ..base
        };
        assert!(!verify(b"key", Role::Client, &other_user, &p));
        let other_cn = [3u8; 32];
        assert!(!verify(b"key", Role::Client, &t(&other_cn, &sn), &p));
        let other_sn = [4u8; 32];
        assert!(!verify(b"key", Role::Client, &t(&cn, &other_sn), &p));
        let bound = Transcript {
            binding: b"tls",
            ..base
        };
        assert!(!verify(b"key", Role::Client, &bound, &p));
    }

    #[test]
    fn proof_frames_round_trip_and_match_the_documented_bytes() {
        let p = [0xabu8; 32];
        let f = proof_frame(&p);
        assert_eq!(&f[..8], &[0, 0, 0, 36, 0x92, 9, 0xc4, 32]);
        assert_eq!(parse_proof(&f[4..]), Some(p));
        assert_eq!(parse_proof(&f[4..f.len() - 1]), None);
        assert_eq!(parse_proof(&[0x92, 1, 0xc4, 32]), None);
    }

    #[test]
    fn the_mac_is_hmac_sha256_over_the_documented_input() {
        // Computed independently: Python's
        // hmac.new(b"key", b"remote auth v1\0client\0\x05alice" + b"\1"*32
        //          + b"\2"*32 + b"\0\0", "sha256").hexdigest()
        let (cn, sn) = ([1u8; 32], [2u8; 32]);
        let p = proof(b"key", Role::Client, &t(&cn, &sn));
        let hex = |p: [u8; 32]| -> String { p.iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(hex(p), EXPECTED);
        // With a 32-byte channel binding (a TLS exporter value): the same
        // input followed by b"\0\x20" + b"\3"*32 instead of b"\0\0".
        let bound = Transcript {
            binding: &[3u8; 32],
            ..t(&cn, &sn)
        };
        assert_eq!(hex(proof(b"key", Role::Client, &bound)), EXPECTED_BOUND);
    }

    const EXPECTED: &str = "659cc25e59fb93a608e41089384c95dd4dd6c117b101fa7bfeacfd7cb466750b";
    const EXPECTED_BOUND: &str = "71596cf37fa553448f9f7b720379a64cd29d0b6d6ef9c38837c9fc805e031216";
}
