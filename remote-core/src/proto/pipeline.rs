//! Promise pipelining (feature `pipeline`, PROTOCOL.md §3.10): the wire
//! forms of kept-answer calls (kind 12), promise targets (`[call_id]` in a
//! call's target field) and finish (kind 13).

use super::value::{enc, Malformed, Reader};
use super::{kind, CallId, ObjectId};

/// The hello feature that enables kinds 12 and 13 and promise targets.
pub const FEATURE: &str = "pipeline";

/// What a call (kind 1 or 12) is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallTarget {
    /// An object in the receiver's export table (a u32 on the wire).
    Object(ObjectId),
    /// The answer the receiver keeps for the sender's kept-answer call with
    /// this id (`[call_id]` on the wire, feature `pipeline` only).
    Promise(CallId),
}

/// Reads a call's target: a u32, or a one-element array holding a u32.
pub(super) fn read_target(r: &mut Reader<'_>) -> Result<CallTarget, Malformed> {
    // An array header (fixarray, array 16, array 32) starts a promise;
    // anything else is read as the u32 (checked without building an
    // error: this runs for every call).
    if !matches!(r.next_byte(), Some(0x90..=0x9f | 0xdc | 0xdd)) {
        return Ok(CallTarget::Object(ObjectId(r.u32()?)));
    }
    let mut peek = r.clone();
    let n = peek.array_len()?;
    if n != 1 {
        return Err(r.err(format!(
            "a promise target is [call_id] (one element), got an array of {n}"
        )));
    }
    *r = peek;
    let at = r.pos();
    match r.u32() {
        Ok(id) => Ok(CallTarget::Promise(CallId(id))),
        Err(e) => Err(Malformed {
            offset: at,
            reason: format!(
                "a promise target is [call_id], a u32 in an array: {}",
                e.reason
            ),
        }),
    }
}

/// Starts a call frame (kind 1, or 12 if `keep`) up to its arguments, with
/// either target form; append the argument array, then
/// [`finish`](super::encode::finish).
pub fn call_head(
    buf: &mut Vec<u8>,
    keep: bool,
    id: CallId,
    target: CallTarget,
    method: &str,
    timeout_ms: u32,
) {
    enc::array_len(buf, 6);
    let k = if keep { kind::KEPT_CALL } else { kind::CALL };
    enc::uint(buf, u64::from(k));
    enc::uint(buf, u64::from(id.0));
    match target {
        CallTarget::Object(o) => enc::uint(buf, u64::from(o.0)),
        CallTarget::Promise(c) => {
            enc::array_len(buf, 1);
            enc::uint(buf, u64::from(c.0));
        }
    }
    enc::str(buf, method);
    enc::uint(buf, u64::from(timeout_ms));
}

/// A complete finish frame: `[13, call_id]`.
pub fn finish(id: CallId) -> Vec<u8> {
    let mut b = super::encode::begin(16);
    enc::array_len(&mut b, 2);
    enc::uint(&mut b, u64::from(kind::FINISH));
    enc::uint(&mut b, u64::from(id.0));
    super::encode::finish(&mut b);
    b
}

/// The finish frame of [`finish`], built on the stack: `(bytes, len)`.
pub(crate) fn finish_inline(id: CallId) -> ([u8; 11], usize) {
    let mut b = [0u8; 11];
    b[4] = 0x92;
    b[5] = kind::FINISH;
    let n = match id.0 {
        v @ 0..=0x7f => {
            b[6] = v as u8;
            1
        }
        v @ 0x80..=0xff => {
            b[6..8].copy_from_slice(&[0xcc, v as u8]);
            2
        }
        v @ 0x100..=0xffff => {
            b[6] = 0xcd;
            b[7..9].copy_from_slice(&(v as u16).to_be_bytes());
            3
        }
        v => {
            b[6] = 0xce;
            b[7..11].copy_from_slice(&v.to_be_bytes());
            5
        }
    };
    let len = 2 + n;
    b[..4].copy_from_slice(&(len as u32).to_be_bytes());
    (b, 4 + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Message;
    use crate::Limits;

    fn parse(frame: &[u8]) -> Result<Message<'_>, Malformed> {
        Message::parse(frame, &Limits::default(), &mut Vec::new())
    }

    #[test]
    fn kept_call_and_promise_target_round_trip() {
        let mut b = Vec::new();
        call_head(
            &mut b,
            true,
            CallId(7),
            CallTarget::Promise(CallId(5)),
            "read",
            100,
        );
        b.push(0x90);
        // [12, 7, [5], "read", 100, []]
        assert_eq!(
            b,
            [0x96, 0x0c, 0x07, 0x91, 0x05, 0xa4, b'r', b'e', b'a', b'd', 0x64, 0x90]
        );
        match parse(&b).unwrap() {
            Message::Pipelined {
                keep,
                id,
                target,
                method,
                timeout_ms,
                args,
                items,
            } => {
                assert!(keep);
                assert_eq!(items, 0);
                assert_eq!(
                    (id, target, method, timeout_ms),
                    (CallId(7), CallTarget::Promise(CallId(5)), "read", 100)
                );
                assert_eq!(args, 11..12);
            }
            other => panic!("{other:?}"),
        }
        // A plain kind 1 with a u32 target stays an ordinary call.
        let mut b = Vec::new();
        call_head(
            &mut b,
            false,
            CallId(1),
            CallTarget::Object(ObjectId(3)),
            "m",
            5,
        );
        b.push(0x90);
        assert!(matches!(parse(&b).unwrap(), Message::Call { .. }));
        assert_eq!(finish(CallId(5)), [0, 0, 0, 3, 0x92, 0x0d, 0x05]);
        assert_eq!(
            parse(&finish(CallId(5))[4..]).unwrap(),
            Message::Finish { id: CallId(5) }
        );
    }

    #[test]
    fn the_inline_finish_is_the_encoded_one() {
        for id in [0, 5, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, u32::MAX] {
            let (b, n) = finish_inline(CallId(id));
            assert_eq!(&b[..n], &finish(CallId(id))[..], "{id}");
        }
    }

    #[test]
    fn a_promise_target_nested_wrongly_is_malformed() {
        for (target, why) in [
            (&[0x90][..], "got an array of 0"),
            (&[0x92, 0x01, 0x02], "got an array of 2"),
            (&[0x91, 0x91, 0x01], "a u32 in an array"),
            (&[0x91, 0xa1, b'x'], "a u32 in an array"),
        ] {
            let mut b = vec![0x96, 0x01, 0x01];
            b.extend_from_slice(target);
            b.extend_from_slice(&[0xa1, b'm', 0x05, 0x90]);
            let e = parse(&b).unwrap_err();
            assert!(e.reason.contains(why), "{target:?}: {e}");
        }
    }
}
