//! Interoperability with a standard TLS client: `openssl s_client` completes
//! a handshake with a `tls://` server, verifies its certificate, and sees
//! the ALPN protocol `remote/1` (and, with a client certificate, mutual TLS).
//! Skipped, saying so, when `openssl` is not on PATH (.ci/run installs it).

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use pki::Ca;
use remote_core::{Server, TlsServerConfig};
use support::{Counter, Stats};

fn have_openssl() -> bool {
    std::process::Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `openssl s_client` against `addr` with `extra` arguments, stdin
/// closed (so it leaves after the handshake); returns stdout and stderr.
async fn s_client(authority: &str, ca_file: &std::path::Path, extra: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["s_client", "-connect", authority, "-alpn", "remote/1"])
        .arg("-CAfile")
        .arg(ca_file)
        .args(["-servername", "localhost", "-verify_return_error"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("openssl s_client did not finish within 60 s")
        .expect("openssl s_client could not run");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn openssl_s_client_completes_a_handshake_and_sees_the_alpn() {
    if !have_openssl() {
        eprintln!("SKIPPED: `openssl` is not on PATH (install it to run this interop test)");
        return;
    }
    let (ca, clients) = (Ca::new("test CA"), Ca::new("clients CA"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let s = ca.server();
    let (cert_file, key_file) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert_file, &s.cert_pem).unwrap();
    std::fs::write(&key_file, &s.key_pem).unwrap();

    // Plain server TLS, the configuration read from PEM files.
    let server = Server::builder()
        .tls(TlsServerConfig::from_pem_files(&cert_file, &key_file).unwrap())
        .bind("tls://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Counter::remote(0, Arc::new(Stats::default())));
    let authority = server.local_addr().trim_start_matches("tls://").to_owned();
    let out = s_client(&authority, &ca_file, &[]).await;
    assert!(out.contains("ALPN protocol: remote/1"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
    // No early data offered to a client: 0-RTT is off.
    assert!(!out.contains("Max Early Data: 1"), "{out}");

    // Mutual TLS: with a certificate from the clients' CA, openssl gets in;
    // without one the server refuses it.
    let tls = TlsServerConfig::from_pem(s.cert_pem.as_bytes(), s.key_pem.as_bytes())
        .unwrap()
        .require_client_cert_pem(clients.pem().as_bytes())
        .unwrap();
    let server = Server::builder()
        .tls(tls)
        .bind("tls://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Counter::remote(0, Arc::new(Stats::default())));
    let authority = server.local_addr().trim_start_matches("tls://").to_owned();
    let alice = clients.client("alice");
    let (acert, akey) = (dir.path().join("alice.pem"), dir.path().join("alice.key"));
    std::fs::write(&acert, &alice.cert_pem).unwrap();
    std::fs::write(&akey, &alice.key_pem).unwrap();
    let out = s_client(
        &authority,
        &ca_file,
        &[
            "-cert",
            acert.to_str().unwrap(),
            "-key",
            akey.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.contains("ALPN protocol: remote/1"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    // `-ign_eof`: keep reading after stdin ends, so openssl sees the
    // server's alert (a TLS 1.3 client finishes its side of the handshake
    // before the server has checked its certificate).
    let out = s_client(&authority, &ca_file, &["-ign_eof"]).await;
    assert!(
        out.to_lowercase().contains("certificate required"),
        "a client without a certificate was not refused: {out}"
    );
}
