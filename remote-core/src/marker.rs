//! The marker that ties an implementation of a `#[remote]` trait to
//! `#[remote]` on its impl block.
//!
//! `#[remote] trait Chat` gets the supertrait `RemoteImpl<ChatClient>`, and
//! `#[remote] impl Chat for Room` also emits
//! `impl ImplementedWithRemote<..> for Room` (naming the proxy through
//! [`InterfaceProxy`], so it works wherever the trait is in scope). An impl block without `#[remote]` therefore fails
//! with the message below instead of a bare signature mismatch (async
//! methods) or, for a trait with only blocking methods, compiling without
//! registering the implementation for the policy check.

/// Implemented by `#[remote] impl Trait for Type` (and by the trait's proxy)
/// for `P` = the trait's proxy type and `A` = the tuple of the trait's type
/// arguments (which keeps the impl's parameters constrained: a projection
/// alone does not). Not for hand-written impls.
#[diagnostic::on_unimplemented(
    message = "`{Self}` implements a `#[remote]` trait, but its impl block lacks `#[remote]`",
    label = "add `#[remote]` above this impl block",
    note = "write `#[remote] impl Trait for {Self} {{ .. }}`: it boxes the async methods as \
            the trait expects and registers the implementation for the policy check \
            (the trait's proxy is `{P}`)"
)]
pub trait RemoteImpl<P: ?Sized, A: ?Sized = ()> {}

/// What `#[remote]` impl blocks (and proxies) implement; [`RemoteImpl`]
/// follows from it. The indirection keeps the generated impls out of the
/// "other types implement" list under the error (`do_not_recommend` on the
/// one blanket impl here, as the attribute cannot be emitted into a module
/// under `#![no_implicit_prelude]`).
pub trait ImplementedWithRemote<P: ?Sized, A: ?Sized = ()> {}

#[diagnostic::do_not_recommend]
impl<T, P, A> RemoteImpl<P, A> for T
where
    T: ?Sized + ImplementedWithRemote<P, A>,
    P: ?Sized,
    A: ?Sized,
{
}

/// Names a `#[remote]` trait's proxy from its trait object (`dyn Chat` to
/// `ChatClient`), so generated code needs only the trait's path.
pub trait InterfaceProxy {
    /// The generated proxy type.
    type Proxy: ?Sized;
}
