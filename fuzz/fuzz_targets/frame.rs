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
    let _ = s.export(remote_core::proto::ExportKey { addr: 1, interface: std::any::TypeId::of::<u8>() }, true, || 1);
    let _ = s.start_call(7);
    // Split the input into frames at 0xff 0xfe markers. Each call is
    // handled as the driver does (`handle_frame_unadmitted`), by the first
    // byte of its frame: finished inline (never admitted), admitted and
    // left running, admitted and finished at the next call, or counted
    // with its id free (answered inline, a blocking closure running on).
    let mut held = Vec::new();
    let mut running = Vec::new();
    for frame in data.split(|b| *b == 0xfe) {
        match s.handle_frame_unadmitted(frame) {
            Ok(Event::Call { id, seq, refs, .. }) => {
                held.push(refs);
                if let Some((id, seq)) = running.pop() {
                    s.call_done(id, seq);
                }
                match frame.first().map(|b| b % 4) {
                    Some(1) => s.admit(id, seq),
                    Some(2) => {
                        s.admit(id, seq);
                        running.push((id, seq));
                    }
                    Some(3) => {
                        s.admit_answered();
                        running.push((id, seq));
                    }
                    _ => {}
                }
            }
            Ok(Event::Reply { refs, .. }) => held.push(refs),
            Ok(_) => {}
            Err(_) => break,
        }
        assert!(s.calls_in_flight() <= 8);
        assert!(s.imports().len() <= 16);
        assert!(s.exports().len() <= 16);
    }
});
