//! State machine tests: no IO, no runtime.
