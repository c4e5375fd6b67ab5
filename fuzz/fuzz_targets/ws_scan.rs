//! A server's WebSocket input (the frame-header scan and the meter above
//! it) on an arbitrary byte stream in arbitrary reads: never panics; what
//! it reads ahead, keeps of the upgrade request, holds before the opening
//! and counts in the budget after it stay within their bounds; the budget
//! is all given back once the stream is dropped. The driver is in
//! `remote-core/src/transport/ws_fuzz.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| remote_core::__fuzz::ws_scan(data));
