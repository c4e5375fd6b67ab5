//! What a walk of a call's arguments found, handed from the receiver's
//! reader (which walks a long call's arguments to weigh them before it
//! starts the call, `driver/share.rs`) to the parse of the same frame that
//! follows, so the arguments are walked once, not twice.

use std::ops::Range;

use super::value::FoundRef;
use super::Message;

/// The arguments of one call frame as [`Message::parse`] walked them: their
/// byte range, item count and references. It applies to that frame only:
/// it records the payload's address and length, and a parse of any other
/// bytes (another frame, or the same one moved) walks them itself.
#[derive(Debug)]
pub(crate) struct ArgsWalk {
    at: (usize, usize),
    args: Range<usize>,
    items: u32,
    refs: Vec<FoundRef>,
}

impl ArgsWalk {
    /// What parsing `payload` into `msg` found, `refs` being the references
    /// the parse appended; `None` unless `msg` is a call.
    pub(crate) fn of(payload: &[u8], msg: &Message<'_>, refs: Vec<FoundRef>) -> Option<Self> {
        match msg {
            Message::Call { args, items, .. } | Message::Pipelined { args, items, .. } => {
                Some(ArgsWalk {
                    at: (payload.as_ptr() as usize, payload.len()),
                    args: args.clone(),
                    items: *items,
                    refs,
                })
            }
            _ => None,
        }
    }

    /// The arguments' range, item count and references if this walk is of
    /// `payload`'s arguments, which start at `start`.
    pub(super) fn of_payload(
        &self,
        payload: &[u8],
        start: usize,
    ) -> Option<(Range<usize>, u32, &[FoundRef])> {
        let same =
            self.at == (payload.as_ptr() as usize, payload.len()) && self.args.start == start;
        same.then(|| (self.args.clone(), self.items, &self.refs[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{encode, CallId, ObjectId};
    use crate::Limits;

    /// A call's payload whose arguments are `[<ref id>, 1, 2, ..., n]`.
    fn call(id: u8, n: u8) -> Vec<u8> {
        let mut f = encode::begin(64);
        encode::call_head(&mut f, CallId(7), ObjectId(0), "m", 1000);
        f.push(0x90 + n + 1);
        f.extend_from_slice(&[0xd6, 0x01, 0, 0, 0, id]);
        f.extend(1..=n);
        encode::finish(&mut f);
        f.split_off(4)
    }

    fn parse<'a>(p: &'a [u8], walked: Option<&ArgsWalk>) -> (Message<'a>, Vec<FoundRef>) {
        let mut refs = Vec::new();
        let m = Message::parse_walked(p, &Limits::default(), &mut refs, walked).unwrap();
        (m, refs)
    }

    #[test]
    fn a_walk_stands_in_for_its_own_frame_only() {
        let l = Limits::default();
        let a = call(5, 9);
        let mut refs = Vec::new();
        let m = Message::parse(&a, &l, &mut refs).unwrap();
        let walk = ArgsWalk::of(&a, &m, refs).expect("a call");
        // Its own frame: the same message and references as a walk.
        assert_eq!(parse(&a, Some(&walk)), parse(&a, None));
        assert_eq!(parse(&a, Some(&walk)).1, [(true, ObjectId(5))]);
        // Other bytes of the same length (another frame, or this one
        // moved) are walked: their own reference, not the walk's.
        let b = call(6, 9);
        assert_eq!(parse(&b, Some(&walk)).1, [(true, ObjectId(6))]);
        let moved = a.clone();
        assert_eq!(parse(&moved, Some(&walk)), parse(&a, None));
        // A shorter view of the same memory is not its frame either.
        assert!(
            Message::parse_walked(&a[..a.len() - 1], &l, &mut Vec::new(), Some(&walk)).is_err()
        );
        // Only calls are walks.
        let ping = crate::proto::encode_ping(3);
        let m = Message::parse(&ping[4..], &l, &mut Vec::new()).unwrap();
        assert!(ArgsWalk::of(&ping[4..], &m, Vec::new()).is_none());
    }
}
