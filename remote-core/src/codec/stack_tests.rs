//! Tests of `stack.rs`: segments, sessions and the stack they run on.

use super::*;

/// Recursion 10,000 levels deep, each through `on_stack` with a 4 KiB
/// frame (40 MiB in all), runs on a thread of 256 KiB (by hand: no
/// session, so no cap on segments).
#[test]
fn recursion_on_stack_goes_past_the_threads_stack() {
    fn down(level: usize) -> usize {
        let pad = std::hint::black_box([level as u8; 4096]);
        if level == 10_000 {
            return level;
        }
        let deepest = on_stack::<[u8; 4096], _>(0, 0, || down(level + 1)).unwrap();
        std::hint::black_box(&pad);
        deepest
    }
    let levels = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| down(0))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(levels, 10_000);
}

/// Calls `f` with less than a level of a `u64` left on the stack.
fn at_the_edge(f: &mut dyn FnMut()) {
    let pad = std::hint::black_box([0u8; 4096]);
    if stacker::remaining_stack().unwrap() < level::<u64>(0, 0) {
        f();
    } else {
        at_the_edge(f);
    }
    std::hint::black_box(&pad);
}

/// Siblings at the edge each take a segment: a session takes at most
/// `MAX_SEGMENTS` (and is refused past that), the next starts again,
/// and a value decoded by hand (no session) is not counted.
#[test]
fn a_session_takes_at_most_max_segments() {
    fn siblings() -> usize {
        (0..1000)
            .filter(|_| on_stack::<u64, _>(0, 0, || ()).is_some())
            .count()
    }
    let run = || {
        let mut counts = Vec::new();
        for _ in 0..2 {
            // Begun with room; the edge reached inside.
            let (grown, refused) = Session::run(|session| {
                let mut grown = 0;
                at_the_edge(&mut || grown = siblings());
                (grown, session.refused::<serde::de::value::Error>().is_err())
            });
            assert!(refused);
            counts.push(grown);
        }
        let mut unsessioned = 0;
        at_the_edge(&mut || unsessioned = siblings());
        counts.push(unsessioned);
        counts
    };
    let counts = std::thread::Builder::new()
        .stack_size(4 << 20)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
    let max = MAX_SEGMENTS as usize;
    assert_eq!(counts, [max, max, 1000]);
}

/// Records, as it is encoded or decoded, the sessions under way.
#[derive(Debug)]
struct Probe(u32);

fn sessions() -> u32 {
    SEGMENTS.with(|s| s.sessions.get())
}

impl serde::Serialize for Probe {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(sessions())
    }
}

impl<'de> serde::Deserialize<'de> for Probe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u32::deserialize(d)?;
        Ok(Probe(sessions()))
    }
}

/// A whole value encoded or decoded by this crate is a session; one by
/// hand is not.
#[test]
fn encodes_and_decodes_are_sessions() {
    let bytes = crate::codec::encode_detached(&Probe(0)).unwrap();
    assert_eq!(bytes, [1]);
    let probe: Probe = crate::codec::decode_detached(&[7]).unwrap();
    assert_eq!(probe.0, 1);
    let by_hand: Probe = rmp_serde::from_slice(&[7]).unwrap();
    assert_eq!(by_hand.0, 0);
    assert_eq!(sessions(), 0);
}

/// Where the thread's stack is not known, or short (256 KiB), a whole
/// value runs on a segment of `SESSION_STACK`, whose end is known;
/// elsewhere on the thread's own stack.
#[test]
fn a_session_runs_on_a_known_stack() {
    let left = |unknown: bool, stack: usize| {
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || {
                FORCE_UNKNOWN.with(|f| f.set(unknown));
                Session::run(|_| stacker::remaining_stack().unwrap())
            })
            .unwrap()
            .join()
            .unwrap()
    };
    let segment = SESSION_STACK - (64 << 10);
    // The thread's own: 4 MiB asked for (or a larger one glibc kept
    // from an ended thread).
    let own = left(false, 4 << 20);
    assert!((SESSION_ROOM..segment).contains(&own), "{own}");
    let unknown = left(true, 4 << 20);
    assert!(unknown > segment, "{unknown}");
    let short = left(false, 256 << 10);
    assert!(short > segment, "{short}");
}

/// A thread's first session, run on a segment of ours (the
/// dispatcher's room), does not take that segment's end for the
/// thread's: a later session on the thread's own stack, short of
/// room, still goes to a segment (red-team pass 43).
#[test]
fn a_session_on_a_segment_leaves_the_threads_stack_end_alone() {
    let room = 6 << 20;
    let (inside, after) = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let inside = with_room(16 << 20, || {
                Session::run(|_| stacker::remaining_stack().unwrap())
            });
            let after = Session::run_holding(room / HELD_COPIES, 0, |_| {
                stacker::remaining_stack().unwrap()
            });
            (inside, after)
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(inside > 8 << 20, "on the segment: {inside}");
    assert!(after > room, "a short session goes to a segment: {after}");
}
