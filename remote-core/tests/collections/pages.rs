//! Pages and stream batches bounded by encoded size, so a reply always fits
//! in a frame.

use futures_util::StreamExt;
use remote_core::collections::{RemoteList, RemoteMap, SharedMap, SharedVec, MAX_PAGE_BYTES};
use remote_core::{Connection, ConnectionBuilder, Limits};

/// An item of about 1 KiB: 1,024 of them are over the default 1 MiB frame.
fn big(i: u32) -> String {
    format!("{i:>1100}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_of_large_items_fit_and_concatenate_to_the_list() {
    let log = SharedVec::<String>::new();
    for i in 0..1024 {
        log.push(big(i)).await.unwrap();
    }
    let (_s, c) = Connection::pair(
        ConnectionBuilder::new().serve(log.remote()),
        ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let list = c.root::<dyn RemoteList<String>>();
    let len = list.len().await.unwrap();
    let mut all = Vec::new();
    let mut pages = 0;
    while (all.len() as u64) < len {
        let page = list.range(all.len() as u64, len).await.unwrap();
        assert!(!page.is_empty(), "a page holds at least one item");
        assert!(page.iter().map(|s| s.len() + 3).sum::<usize>() <= MAX_PAGE_BYTES);
        all.extend(page);
        pages += 1;
    }
    assert!(pages > 1, "1,024 items of 1 KiB need more than one page");
    assert_eq!(all, log.snapshot());

    // The stream's batches are bounded the same way, whatever is asked.
    let streamed: Vec<String> = list
        .iter(0)
        .await
        .unwrap()
        .with_batch(1024)
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(streamed, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_alone_larger_than_the_budget_still_comes_alone() {
    let log = SharedVec::<String>::new();
    log.push("small".into()).await.unwrap();
    log.push("z".repeat(MAX_PAGE_BYTES + 10)).await.unwrap();
    log.push("after".into()).await.unwrap();
    let roomy = Limits {
        max_frame_len: 4 << 20,
        ..Limits::default()
    };
    let (_s, c) = Connection::pair(
        ConnectionBuilder::new()
            .limits(roomy.clone())
            .serve(log.remote()),
        ConnectionBuilder::new().limits(roomy),
    )
    .await
    .unwrap();
    let list = c.root::<dyn RemoteList<String>>();
    assert_eq!(list.range(0, 3).await.unwrap(), vec!["small".to_owned()]);
    assert_eq!(list.range(1, 3).await.unwrap().len(), 1);
    assert_eq!(list.range(2, 3).await.unwrap(), vec!["after".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_pages_of_large_values_fit_and_cover_the_map() {
    let map = SharedMap::<u32, String>::new();
    for i in 0..1024 {
        map.insert(i, big(i)).await.unwrap();
    }
    let (_s, c) = Connection::pair(
        ConnectionBuilder::new().serve(map.remote()),
        ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let m = c.root::<dyn RemoteMap<u32, String>>();
    let mut all = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = m.entries(after).await.unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        all.extend(page);
        pages += 1;
    }
    assert!(pages > 1);
    assert_eq!(all, map.snapshot().into_iter().collect::<Vec<_>>());
}
