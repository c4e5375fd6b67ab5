//! Pages bounded by item count and by encoded size, so a reply always fits
//! in a frame.

use serde::Serialize;

use crate::codec;

/// Most items one [`RemoteList::range`](super::RemoteList::range) or
/// [`RemoteMap::entries`](super::RemoteMap::entries) call returns.
pub const MAX_PAGE: u64 = 1024;

/// Most encoded bytes of items one page (or one batch of
/// [`RemoteList::iter`](super::RemoteList::iter)'s stream) carries: half
/// the default [`Limits::max_frame_len`](crate::Limits::max_frame_len), so
/// a page and its message header always fit in a default frame. A page for
/// a connection with a smaller frame limit holds half of that limit at
/// most.
///
/// A page stops before the item that would take it past this budget, but
/// always holds at least one item when there is one (an item alone larger
/// than the peer's frame limit fails that call with `limit_exceeded`
/// naming `max_frame_len`). A page shorter than asked is therefore not the
/// end: ask again from where it stopped, and use `len()` to know the end.
pub const MAX_PAGE_BYTES: usize = 512 << 10;

/// Takes items from `items` while the page holds fewer than `max_items` and
/// their encoded size stays within [`page_bytes`] (at least one item if
/// there is one); `own` turns a borrowed item into the page's item.
pub(super) fn take<X: Serialize, O>(
    items: impl IntoIterator<Item = X>,
    max_items: usize,
    own: impl Fn(X) -> O,
) -> Vec<O> {
    let max_bytes = page_bytes();
    let mut page = Vec::new();
    let mut bytes = 0usize;
    for item in items.into_iter().take(max_items) {
        // An item that cannot be measured cannot be encoded either: its
        // page fails as a whole when the reply is encoded, as it would
        // without the budget.
        let len = codec::encoded_len(&item).unwrap_or(0);
        if !page.is_empty() && bytes.saturating_add(len) > max_bytes {
            break;
        }
        bytes = bytes.saturating_add(len);
        page.push(own(item));
    }
    page
}

/// The encoded bytes one page or stream batch may carry:
/// [`MAX_PAGE_BYTES`], or half of the calling peer's connection's frame
/// limit if that is less, so the reply fits in its frame.
pub(crate) fn page_bytes() -> usize {
    crate::Peer::current().map_or(MAX_PAGE_BYTES, |p| {
        MAX_PAGE_BYTES.min(p.max_frame_len() / 2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_stops_at_the_byte_budget_but_holds_at_least_one_item() {
        let big = "x".repeat(200 << 10); // 200 KiB, encoded 200 KiB + 5
        let items = vec![big.clone(); 5];
        let page = take(items.iter(), 1024, Clone::clone);
        assert_eq!(page.len(), 2, "two fit in 512 KiB, three do not");
        let huge = ["y".repeat(MAX_PAGE_BYTES + 1)];
        assert_eq!(take(huge.iter(), 1024, Clone::clone).len(), 1);
        let small: Vec<u32> = (0..5000).collect();
        assert_eq!(take(small.iter(), 1024, |x| *x).len(), 1024);
        assert!(take(Vec::<u8>::new(), 1024, |x| x).is_empty());
    }

    #[test]
    fn measured_size_is_the_encoded_size() {
        let v = (String::from("key"), vec![1u64, 1 << 40]);
        let bytes = codec::encode_detached(&v).unwrap();
        assert_eq!(codec::encoded_len(&v).unwrap(), bytes.len());
        // A reference is sized (six bytes) without a connection, and
        // nothing is exported.
        let listener = super::super::on_push(|_, _: u32| {});
        assert_eq!(codec::encoded_len(&(1u8, &listener)).unwrap(), 1 + 1 + 6);
        assert!(
            codec::encode_detached(&listener).is_err(),
            "still refused outside a call"
        );
    }
}
