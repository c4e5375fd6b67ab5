//! Whether a pending write tells that the peer reads nothing.
//!
//! A write the socket does not take at once completes when the kernel
//! wakes the writer, which it does only once a third of the socket's send
//! buffer is free: with a buffer grown to megabytes, a peer reading
//! steadily at 64 or 256 KB/s left one write pending for more than 5 s,
//! and was closed for `pressure_stall_timeout` as if it read nothing (a
//! red-team pass). With `TCP_NOTSENT_LOWAT` set, the kernel keeps at most
//! that many bytes not yet sent (beyond what is in flight) and wakes the
//! writer once half of it is sent: a pending write completes as soon as
//! the peer has taken about [`NOTSENT_LOWAT`] / 2, so a write pending for
//! `pressure_stall_timeout` means the peer took less than that in the
//! period. The option also keeps what a peer that reads nothing holds in
//! the kernel small. Where it cannot be set (other systems, Unix sockets),
//! a pending write tells nothing, and a server never closes a peer for
//! `pressure_stall_timeout` there.

/// Bytes the kernel keeps unsent for a server's TCP connection: far more
/// than the bytes in flight on a fast link need to be refilled in time,
/// so throughput does not suffer.
pub(crate) const NOTSENT_LOWAT: u32 = 64 << 10;

/// Sets [`NOTSENT_LOWAT`] on `socket`: whether a pending write now tells
/// that the peer reads nothing (module doc).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn watch(socket: &tokio::net::TcpStream) -> bool {
    socket2::SockRef::from(socket)
        .set_tcp_notsent_lowat(NOTSENT_LOWAT)
        .is_ok()
}

/// Elsewhere: never.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn watch(_socket: &tokio::net::TcpStream) -> bool {
    false
}
