//! Observability (filled in below).
