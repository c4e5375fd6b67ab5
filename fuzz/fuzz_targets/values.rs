//! Decoding arbitrary msgpack into typed values (what a method's arguments
//! go through after the walker): errors, never panics.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
enum Shape {
    Unit,
    Tuple(u8, String),
    Struct { a: Vec<i64>, b: Option<Box<Shape>> },
}

#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
struct Args(String, Vec<Shape>, BTreeMap<String, f64>, Option<(u8, bool)>);

fuzz_target!(|data: &[u8]| {
    let mut refs = Vec::new();
    // Only what passes the walker reaches serde, as in the runtime.
    let mut r = remote_core::proto::Reader::new(data);
    if remote_core::proto::walk(&mut r, 64, &mut refs).is_ok() {
        let _ = rmp_serde_decode(data);
    }
});

fn rmp_serde_decode(data: &[u8]) -> Option<Args> {
    remote_core::__private::decode_value::<Args>(data).ok()
}
