//! Shared interfaces of the examples.
