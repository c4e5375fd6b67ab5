# The benchmark interface for capnp-rpc, the same operations as
# `common/ours.rs` (`Bench`, `Cb`). `bench_capnp.rs` beside this file is
# generated from it; see `regen.sh`.
@0xd1c3e1b2a4f5e6d7;

interface Bench {
  # The trivial call: one u64 in, one u64 out.
  add @0 (x :UInt64) -> (y :UInt64);
  # Payload echo.
  echo @1 (data :Data) -> (data :Data);
  # Calls `cb.add(x)` once and returns its result (a callback round trip).
  callBack @2 (cb :Cb, x :UInt64) -> (y :UInt64);
  # Returns a new capability.
  make @3 () -> (cb :Cb);
}

interface Cb {
  # The trivial call on a capability.
  add @0 (x :UInt64) -> (y :UInt64);
}
