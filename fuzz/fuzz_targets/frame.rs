//! The protocol state machine on arbitrary frames after a handshake: it must
//! never panic, whatever the peer sends, and its tables must stay bounded.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use remote_core::proto::{encode, Event, ObjectId, ReleaseSink, State};
use remote_core::Limits;

struct Sink;
impl ReleaseSink for Sink {
    fn release(&self, _: ObjectId, _: u64, _: u32) {}
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_calls_in_flight: 8, max_imports: 16, max_exports: 16, ..Limits::default() };
    let mut s: State<u8, u32> = State::new(Some(0), limits, Arc::new(Sink));
    let hello = encode::hello(&State::<u8, u32>::hello(None));
    let _ = s.handle_frame(&hello[4..]);
    let _ = s.export(remote_core::proto::ExportKey { addr: 1, interface: std::any::TypeId::of::<u8>() }, || 1);
    let _ = s.start_call(7);
    // Split the input into frames at 0xff 0xfe markers.
    let mut held = Vec::new();
    for frame in data.split(|b| *b == 0xfe) {
        match s.handle_frame(frame) {
            Ok(Event::Call { refs, .. }) | Ok(Event::Reply { refs, .. }) => held.push(refs),
            Ok(_) => {}
            Err(_) => break,
        }
        assert!(s.calls_in_flight() <= 8);
        assert!(s.imports().len() <= 16);
        assert!(s.exports().len() <= 16);
    }
});
