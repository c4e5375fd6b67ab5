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
