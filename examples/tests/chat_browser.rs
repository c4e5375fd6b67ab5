//! The chat page in real headless Chromium: the page (Rust compiled to
//! wasm32, talking over ws://) connects, posts, receives a message posted
//! by a native client through the listener it serves, and once the page is
//! closed the server drops that listener.
//!
//! Needs the built page and the browser tools, so it runs only when
//! `CHAT_WEB_DIR` names the page (`.ci/run` builds it with
//! `examples/chat-web/build.sh`, installs Debian's `chromium` and the npm
//! packages of `examples/chat-web/e2e`); otherwise it says so and passes.
//! The screenshot is kept as `<target dir>/chat-web/chat-page.png`.

use std::path::PathBuf;
use std::time::Duration;

use remote_core::Connection;
use remote_examples::chat::{Chat, Message};
use tokio::io::AsyncReadExt;
use tokio::process::Child;

#[allow(dead_code)]
#[path = "../chat.rs"]
pub mod chat;

const LIMIT: Duration = Duration::from_secs(60);

/// Waits until `cond` holds, polling; fails the test after [`LIMIT`] with
/// the browser driver's output so far (the page's console and errors).
async fn eventually(what: &str, log: &std::sync::Mutex<String>, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(LIMIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{what}: not within {LIMIT:?}; the browser driver said:\n{}",
            log.lock().unwrap()
        )
    });
}

/// Fails the test at once if the browser driver already exited, with its
/// output (instead of waiting out [`LIMIT`] for the page).
fn still_running(driver: &mut Child, log: &std::sync::Mutex<String>) {
    if let Ok(Some(status)) = driver.try_wait() {
        // Give the output reader a moment to collect the last lines.
        std::thread::sleep(Duration::from_millis(200));
        panic!(
            "the browser driver exited early ({status}):\n{}",
            log.lock().unwrap()
        );
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_in_chromium_posts_receives_and_its_listener_is_released() {
    let Some(dir) = std::env::var_os("CHAT_WEB_DIR") else {
        eprintln!("skipped: CHAT_WEB_DIR is not set (see .ci/run: build the page first)");
        return;
    };
    let dir = dir.into_string().expect("a UTF-8 path");
    let (server, list) = chat::serve_list("ws://127.0.0.1:0/")
        .await
        .expect("chat server");
    let (_files, url) = chat::serve_page(&dir, server.local_addr()).expect("page server");
    let shot = target_dir().join("chat-web/chat-page.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);

    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("chat-web/e2e");
    let mut driver = tokio::process::Command::new("node")
        .arg("drive.mjs")
        .arg(&url)
        .arg(&shot)
        .current_dir(&e2e)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node (with examples/chat-web/e2e's npm packages installed)");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = driver.stdout.take().unwrap();
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf).await {
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };

    // The page connected, subscribed and posted.
    eventually("the page's message reaching the server", &log, || {
        still_running(&mut driver, &log);
        list.snapshot()
            .iter()
            .any(|m| m.user.as_str() == "web" && m.text.as_str() == "hello from the browser")
    })
    .await;
    assert_eq!(list.subscribers(), 1, "the page's listener is subscribed");

    // A native client posts; the server calls the page's listener.
    let native = Connection::connect(server.local_addr())
        .await
        .expect("native client")
        .root::<Chat>();
    native
        .push(Message::new("terminal", "hello from a terminal"))
        .await
        .expect("native post");

    // The page saw it, took the screenshot and closed.
    let status = tokio::time::timeout(Duration::from_secs(120), driver.wait())
        .await
        .expect("the browser driver did not finish within 120 s")
        .expect("browser driver status");
    reader.await.unwrap();
    let text = log.lock().unwrap().clone();
    assert!(status.success(), "browser driver failed:\n{text}");
    for step in ["connected", "posted", "received", "closed"] {
        assert!(text.lines().any(|l| l == step), "no {step:?} in:\n{text}");
    }
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG: {}", shot.display());

    // The page's connection is gone: the server released its listener.
    eventually("the server releasing the page's listener", &log, || {
        list.subscribers() == 0
    })
    .await;
    eprintln!("screenshot: {}", shot.display());
}
