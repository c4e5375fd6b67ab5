//! Bounding text: what a peer sent us that we keep or quote, and what we
//! send in errors.
//!
//! A remote error's text (kind, type, message, chain, backtrace) is kept to
//! [`Limits::max_error_text`](crate::Limits::max_error_text) bytes and its
//! chain to [`Limits::max_error_chain`](crate::Limits::max_error_chain)
//! entries, both when it arrives and when we send one. Peer-supplied names
//! quoted in our own error messages (method names, goodbye reasons) are cut
//! to [`QUOTE_MAX`] bytes, so an error never amplifies what the peer sent.

use std::borrow::Cow;

/// Appended where text was cut.
pub(crate) const MARK: &str = "…";

/// Longest piece of peer-supplied text quoted in one of our messages, in
/// bytes (before escaping).
pub(crate) const QUOTE_MAX: usize = 128;

/// The longest prefix of `s` that is at most `max` bytes and ends on a
/// character boundary.
pub(crate) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` cut to at most `max` bytes, `…` included, if it is longer.
pub(crate) fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        Cow::Borrowed(s)
    } else if max < MARK.len() {
        Cow::Borrowed(prefix(s, max))
    } else {
        Cow::Owned(format!("{}{MARK}", prefix(s, max - MARK.len())))
    }
}

/// Peer-supplied text for quoting in a message of ours: cut to
/// [`QUOTE_MAX`] bytes, then escaped and put in double quotes.
pub(crate) fn quote(s: &str) -> String {
    let cut = prefix(s, QUOTE_MAX);
    if cut.len() == s.len() {
        format!("{s:?}")
    } else {
        format!("{cut:?}{MARK} ({} bytes)", s.len())
    }
}

/// Takes text from a shared byte budget: `s` whole if it fits, else cut
/// (and marked) to what is left, which is then zero.
pub(crate) fn take<'a>(s: &'a str, budget: &mut usize) -> Cow<'a, str> {
    if s.len() <= *budget {
        *budget -= s.len();
        return Cow::Borrowed(s);
    }
    let cut = truncate(s, *budget);
    *budget = 0;
    cut
}

/// Bounds an error's `chain`: at most `max_chain` entries, their text
/// taken from `budget`. `next` yields the `n` entries in order (it is
/// called `n` times, so a parser consumes every entry); entries past the
/// bounds are dropped without being stored, and the last kept entry then
/// says how many were omitted.
pub(crate) fn chain<'a, E>(
    n: usize,
    mut next: impl FnMut() -> Result<&'a str, E>,
    max_chain: usize,
    budget: &mut usize,
) -> Result<Vec<Cow<'a, str>>, E> {
    let mut kept = Vec::with_capacity(n.min(max_chain));
    let mut omitted = 0usize;
    for _ in 0..n {
        let s = next()?;
        if kept.len() < max_chain && (*budget > 0 || s.is_empty()) {
            kept.push(take(s, budget));
        } else {
            omitted += 1;
        }
    }
    if omitted > 0 && max_chain > 0 {
        if kept.len() == max_chain {
            kept.pop();
            omitted += 1;
        }
        kept.push(Cow::Owned(format!(
            "{MARK} {omitted} more causes omitted (max_error_chain = {max_chain})"
        )));
    }
    Ok(kept)
}

/// A remote error's text, bounded.
#[derive(Debug)]
pub(crate) struct ErrorText<'a> {
    pub(crate) kind: Cow<'a, str>,
    pub(crate) type_name: Cow<'a, str>,
    pub(crate) message: Cow<'a, str>,
    pub(crate) chain: Vec<Cow<'a, str>>,
    pub(crate) backtrace: Option<Cow<'a, str>>,
}

impl<'a> ErrorText<'a> {
    /// Bounds `e`'s text to `max_text` bytes and its chain to `max_chain`
    /// entries (kind first, then type, message, chain, backtrace).
    pub(crate) fn of(e: &'a crate::RemoteError, max_chain: usize, max_text: usize) -> Self {
        let mut budget = max_text;
        let kind = take(&e.kind, &mut budget);
        let type_name = take(&e.type_name, &mut budget);
        let message = take(&e.message, &mut budget);
        let mut it = e.chain.iter();
        let chain = chain(
            e.chain.len(),
            || Ok::<_, std::convert::Infallible>(it.next().map_or("", String::as_str)),
            max_chain,
            &mut budget,
        )
        .unwrap_or_else(|never| match never {});
        let backtrace = e.backtrace.as_deref().map(|b| take(b, &mut budget));
        ErrorText {
            kind,
            type_name,
            message,
            chain,
            backtrace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_char_boundaries_and_marks_the_cut() {
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(truncate("héllo", 5), "h…");
        assert_eq!(truncate("héllo", 6), "héllo");
        assert_eq!(truncate("abc", 1), "a");
        let q = quote(&"é".repeat(1000));
        assert!(q.len() < QUOTE_MAX + 40, "{q}");
        assert!(q.ends_with("(2000 bytes)"), "{q}");
        // Escaping happens after the cut: control characters cannot
        // amplify the quote past a small multiple of the bound.
        assert!(quote(&"\u{1}".repeat(100_000)).len() <= QUOTE_MAX * 10);
        assert_eq!(quote("get"), "\"get\"");
    }

    #[test]
    fn a_chain_keeps_its_bound_and_says_what_was_omitted() {
        let mut budget = 100;
        let mut i = 0;
        let c = chain(
            1_000_000,
            || {
                i += 1;
                Ok::<_, ()>("")
            },
            4,
            &mut budget,
        )
        .unwrap();
        assert_eq!(i, 1_000_000, "every entry is consumed");
        assert_eq!(c.len(), 4);
        assert_eq!(c[3], "… 999997 more causes omitted (max_error_chain = 4)");
        let mut budget = 10;
        let mut it = ["0123456789abc", "lost"].into_iter();
        let c = chain(2, || Ok::<_, ()>(it.next().unwrap()), 4, &mut budget).unwrap();
        assert_eq!(c[0], "0123456…");
        assert_eq!(c[1], "… 1 more causes omitted (max_error_chain = 4)");
    }
}
