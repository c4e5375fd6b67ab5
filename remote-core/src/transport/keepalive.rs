//! TCP keepalive on a server's sockets.
//!
//! A connection whose reader waits for room watches its socket for a close
//! (`driver/input/hang_up.rs`), but a peer whose host is gone sends no
//! close, and one that closed with data still unsent (its close queued
//! behind data the server has not read, which the server's full receive
//! window keeps out) is heard from only while its kernel keeps retrying.
//! Its handlers, waiting for its callbacks, would hold what they hold
//! until their deadlines (up to `max_deadline`). With keepalive the
//! kernel probes a connection silent for [`IDLE`], and fails it once
//! [`RETRIES`] probes [`INTERVAL`] apart go unanswered: about 90 s after
//! the peer fell silent, the socket reports the error, and the connection
//! closes and frees what it held. Only if nothing the server sent waits
//! for the peer's acknowledgement, though: otherwise the kernel
//! retransmits instead, and gives up after about 15 minutes at Linux's
//! defaults (a red-team pass). `TCP_USER_TIMEOUT` would bound that too,
//! but also how long a peer may keep its window shut, which
//! `write_stall_timeout` decides, configurably.

use std::time::Duration;

/// Silence before the first probe.
pub(crate) const IDLE: Duration = Duration::from_secs(60);
/// Between probes.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
/// Probes unanswered before the connection fails.
pub(crate) const RETRIES: u32 = 3;

/// Turns keepalive on for `socket` (module doc); where it cannot be set,
/// the connection goes without.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn set(socket: &tokio::net::TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(IDLE)
        .with_interval(INTERVAL)
        .with_retries(RETRIES);
    if let Err(e) = socket2::SockRef::from(socket).set_tcp_keepalive(&keepalive) {
        tracing::debug!("cannot set TCP keepalive: {e}");
    }
}

/// Elsewhere: the system's defaults.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn set(_socket: &tokio::net::TcpStream) {}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::super::listener::Listener;
    use super::super::ServerTls;

    /// The socket under an accepted connection's reader
    /// keeps alive as the module says.
    #[tokio::test]
    async fn a_servers_tcp_sockets_keep_alive() {
        let tls = ServerTls::default();
        let l = Listener::bind("tcp://127.0.0.1:0", &crate::Limits::default(), &tls)
            .await
            .unwrap();
        let addr = l.local_addr();
        let _client = tokio::net::TcpStream::connect(addr.strip_prefix("tcp://").unwrap())
            .await
            .unwrap();
        let opened = l.accept().await.unwrap().open(far()).await.unwrap();
        let mut seen = None;
        opened.reader.with_socket(&mut |fd| {
            let s = socket2::SockRef::from(&fd);
            seen = Some((
                s.keepalive().unwrap(),
                s.tcp_keepalive_time().unwrap(),
                s.tcp_keepalive_interval().unwrap(),
                s.tcp_keepalive_retries().unwrap(),
            ));
        });
        let seen = seen.expect("an accepted TCP connection's reader sits on its socket");
        assert_eq!(seen, (true, super::IDLE, super::INTERVAL, super::RETRIES));
    }

    fn far() -> tokio::time::Instant {
        tokio::time::Instant::now() + std::time::Duration::from_secs(60)
    }
}
