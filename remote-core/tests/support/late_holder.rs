//! A cached document served to holders that acknowledge each pushed
//! invalidation after a delay (the invalidation-lateness tests). Included
//! by `#[path = "support/late_holder.rs"] mod late_holder;` beside `pipe`.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use remote_core::proto::encode_invalidated;
use remote_core::{remote, Error, Limits, Remote};
use tokio::io::AsyncWriteExt;

use super::pipe::{frame, head, raw_peer};

/// A document every holder caches.
#[remote]
pub trait Doc {
    #[remote(cache(ttl = "1h"))]
    async fn text(&self) -> Result<String, Error>;
}

/// The served document.
pub struct Page;

#[remote]
impl Doc for Page {
    async fn text(&self) -> Result<String, Error> {
        Ok("hello".into())
    }
}

/// A raw holder of `root` on a connection with `limits`, acknowledging
/// each push `delay` after it came: the server's end.
pub async fn holder(
    root: &Arc<dyn Doc>,
    limits: Limits,
    delay: Duration,
) -> remote_core::Connection {
    let (server_end, mut pr, pw) =
        raw_peer(Remote::new(root.clone()), limits, vec!["invalidate"]).await;
    assert_eq!(head(&frame(&mut pr).await.unwrap()).0, 0, "hello");
    let pw = Arc::new(tokio::sync::Mutex::new(pw));
    tokio::spawn(async move {
        while let Some(f) = frame(&mut pr).await {
            if let (10, Some(token)) = head(&f) {
                let pw = pw.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = pw.lock().await.write_all(&encode_invalidated(token)).await;
                });
            }
        }
    });
    server_end
}

/// How long after a push arrives it is acknowledged, by its token.
pub type Delay = Arc<dyn Fn(u64) -> Duration + Send + Sync>;

/// Acknowledges each push read from `r` `delay(token)` after it arrives,
/// on `w`. (Needs `raw` beside `pipe`.)
pub fn acknowledge_after<R, W>(mut r: R, w: W, delay: Delay) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let w = Arc::new(tokio::sync::Mutex::new(w));
    tokio::spawn(async move {
        while let Some(f) = super::raw::frame(&mut r).await {
            if super::raw::kind(&f) == 10 {
                let token = head(&f).1.unwrap();
                let w = w.clone();
                let delay = delay(token);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = w.lock().await.write_all(&encode_invalidated(token)).await;
                });
            }
        }
    })
}

/// Opens `n` raw TCP holders of `server`'s root, each after one call of
/// its cached `method`; the `i`th acknowledges each push `delay(i, token)`
/// after it arrives.
pub async fn tcp_holders(
    server: &remote_core::ServerHandle,
    n: usize,
    method: &str,
    delay: impl Fn(usize, u64) -> Duration + Clone + Send + Sync + 'static,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut ackers = Vec::new();
    for i in 0..n {
        let mut s = super::raw::connect(server).await;
        s.write_all(&super::raw::hello(vec!["invalidate"]))
            .await
            .unwrap();
        s.write_all(&super::raw::call(1, 0, method, 60_000, &[0x90]))
            .await
            .unwrap();
        super::raw::next_of_kind(&mut s, super::raw::RETURN).await;
        let (r, w) = s.into_split();
        let delay = delay.clone();
        ackers.push(acknowledge_after(r, w, Arc::new(move |t| delay(i, t))));
    }
    ackers
}
