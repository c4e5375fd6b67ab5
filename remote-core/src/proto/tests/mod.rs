//! State machine tests: no IO, no runtime, no clock.
//!
//! Shared helpers here; the tests themselves by topic in the submodules.

use std::sync::{Arc, Mutex};

use super::*;
use crate::Limits;

mod calls;
mod hostile;
mod index;
mod phases;
mod reader_model;
mod refs;
mod trim;
mod wire;

/// Collects releases queued by dropped imports, and receipts given back
/// by live ones.
#[derive(Default)]
pub(super) struct Sink(
    Mutex<Vec<(ObjectId, u64, u32)>>,
    pub(super) Mutex<Vec<(ObjectId, u32)>>,
);

impl ReleaseSink for Sink {
    fn release(&self, id: ObjectId, generation: u64, count: u32) {
        self.0.lock().unwrap().push((id, generation, count));
    }

    fn give_back(&self, id: ObjectId, count: u32) {
        self.1.lock().unwrap().push((id, count));
    }
}

pub(super) type S = State<&'static str, u32>;

pub(super) fn state_with(limits: Limits) -> (S, Arc<Sink>) {
    let sink = Arc::new(Sink::default());
    let mut s = State::new(Some("root"), limits, sink.clone());
    let hello = encode::hello(&S::hello(None));
    match s.handle_frame(&hello[4..]).unwrap() {
        Event::Opened { version, .. } => assert_eq!(version, PROTOCOL_VERSION),
        other => panic!("expected Opened, got {other:?}"),
    }
    (s, sink)
}

pub(super) fn state() -> (S, Arc<Sink>) {
    state_with(Limits::default())
}

/// A call frame payload with the given raw argument bytes.
pub(super) fn call(id: u32, target: u32, method: &str, args: &[u8]) -> Vec<u8> {
    let mut b = encode::begin(32);
    encode::call_head(&mut b, CallId(id), ObjectId(target), method, 1000);
    b.extend_from_slice(args);
    encode::finish(&mut b);
    b.split_off(4)
}

fn ext_ref(code: i8, id: u32) -> Vec<u8> {
    let mut v = vec![0xd6, code as u8];
    v.extend_from_slice(&id.to_be_bytes());
    v
}

pub(super) fn ret(id: u32, value: &[u8]) -> Vec<u8> {
    let mut b = encode::begin(16);
    encode::return_head(&mut b, CallId(id));
    b.extend_from_slice(value);
    encode::finish(&mut b);
    b.split_off(4)
}

pub(super) fn payload(frame: Vec<u8>) -> Vec<u8> {
    frame[4..].to_vec()
}

/// Exports `make()` as `key(n)` in a message that is then queued (the
/// driver marks its send sent just before), so the peer may use it.
fn export_sent(s: &mut S, n: usize, make: impl FnOnce() -> &'static str) -> ObjectId {
    let id = s.export(key(n), true, make).unwrap();
    s.export_sent(id);
    id
}

fn key(n: usize) -> ExportKey {
    ExportKey {
        addr: n,
        interface: std::any::TypeId::of::<u8>(),
    }
}

fn reject_kind(ev: Event<'_, &'static str, u32>) -> String {
    let Event::Reject { frame, .. } = ev else {
        panic!("expected Reject, got {ev:?}")
    };
    let mut refs = Vec::new();
    match Message::parse(&frame[4..], &Limits::default(), &mut refs).unwrap() {
        Message::Error { error, .. } => format!("{}: {}", error.kind, error.message),
        other => panic!("reject is not an error message: {other:?}"),
    }
}
