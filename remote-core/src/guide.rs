//! Guide to `#[remote]` and `#[derive(Wire)]`: what to write, what is
//! generated, and the rules the macros check.
//!
//! # A remote trait
//!
//! Put [`#[remote]`](crate::remote) on a trait. Methods take `&self`, are
//! `async fn` (or plain `fn`, see [blocking methods](#blocking-methods)),
//! and return `Result<T, E>`. Implement the trait with `#[remote]` on the
//! impl block too, so the `async fn`s match the trait's boxed signatures.
//! Serve an object, and call it through a connection:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote, Wire};
//!
//! #[derive(Debug, Clone, PartialEq, Wire)]
//! pub struct Message {
//!     pub user: String,
//!     pub text: String,
//! }
//!
//! /// A chat room.
//! #[remote]
//! pub trait Chat {
//!     /// Posts a message; returns how many there are.
//!     async fn post(&self, msg: Message) -> Result<u64, Error>;
//!     /// Every message so far.
//!     async fn history(&self) -> Result<Vec<Message>, Error>;
//! }
//!
//! #[derive(Default)]
//! pub struct Room {
//!     messages: Mutex<Vec<Message>>,
//! }
//!
//! #[remote]
//! impl Chat for Room {
//!     async fn post(&self, msg: Message) -> Result<u64, Error> {
//!         let mut m = self.messages.lock().unwrap();
//!         m.push(msg);
//!         Ok(m.len() as u64)
//!     }
//!     async fn history(&self) -> Result<Vec<Message>, Error> {
//!         Ok(self.messages.lock().unwrap().clone())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Error> {
//! // The serving side offers a `Remote<dyn Chat>` as the connection's root.
//! let room: Remote<dyn Chat> = Remote::new(Arc::new(Room::default()));
//! let (client, _server) =
//!     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(room)).await?;
//!
//! // The other side gets a proxy that implements `Chat`.
//! let chat: Remote<dyn Chat> = client.root::<dyn Chat>();
//! let hi = Message { user: "ann".into(), text: "hi".into() };
//! assert_eq!(chat.post(hi.clone()).await?, 1);
//! assert_eq!(chat.history().await?, vec![hi]);
//! # Ok(()) }
//! ```
//!
//! # What `#[remote]` generates
//!
//! For `#[remote] pub trait Chat`:
//!
//! | item | what it is |
//! |---|---|
//! | `trait Chat` | your trait, with `Send + Sync + 'static` supertraits; each `async fn m(&self, ..) -> R` becomes `fn m(&self, ..) -> BoxFuture<'_, R>` so `dyn Chat` works; a hidden `__remote_handle` method |
//! | `ChatClient` | the proxy: `Clone`, `Debug`, `Send + Sync`; implements `Chat` by sending each call; `ChatClient::from_handle(handle)` |
//! | `impl Interface for dyn Chat` | connects `Remote<dyn Chat>` to the proxy, the dispatcher and the schema ([`Interface`](crate::Interface)) |
//! | a private dispatcher | decodes incoming calls by wire name and runs them on your object |
//! | a private deferred implementation | the object a local call in flight will return: each method waits for it, then runs there (what a pipelined call on a local object returns, see [`Promise`](crate::Promise)) |
//! | an `inventory` entry | registers the interface for [`schema::collect`](crate::schema::collect) (not for generic traits) |
//!
//! `#[remote] impl Chat for Room` boxes the `async fn`s and registers
//! `Room` as an implementation of `Chat` in the schema (not for generic
//! impls). A sketch of the trait's expansion:
//!
//! ```text
//! pub trait Chat: Send + Sync + 'static {
//!     fn post(&self, msg: Message) -> BoxFuture<'_, Result<u64, Error>>;
//!     #[doc(hidden)] fn __remote_handle(&self) -> Option<&Handle> { None }
//! }
//! pub struct ChatClient { handle: Handle }
//! impl Chat for ChatClient {
//!     fn post(&self, msg: Message) -> BoxFuture<'_, Result<u64, Error>> { /* send "post", (msg,) */ }
//! }
//! struct __ChatDispatch(Arc<dyn Chat>);          // impl Dispatch: match on "post", ...
//! struct __ChatDeferred(Deferred<dyn Chat>);     // impl Chat: wait for the object, then call it
//! impl Interface for dyn Chat { /* name, proxy, into_dispatch, describe, ... */ }
//! inventory::submit! { InterfaceEntry { describe: <dyn Chat as Interface>::describe } }
//! ```
//!
//! # Rules for methods
//!
//! The macro checks these and reports every violation at once, at the
//! offending tokens:
//!
//! - The receiver is `&self`: a remote object is shared by every peer that
//!   holds it, so `&mut self` and `self` are refused (use a `Mutex` inside).
//! - The return type is `Result<T, E>` (or an alias named `Result`, such as
//!   [`remote_core::Result<T>`](crate::Result)), so a lost connection is an
//!   ordinary error. An alias may fix `E` but not wrap `T` or `E` (as
//!   `Result<(T, Extra)>` would): the schema and the policy check describe
//!   the types the signature writes, so such an alias is refused. `E` is [`Error`](crate::Error), or your own
//!   `Wire + std::error::Error + From<remote_core::Error>` type (see below).
//! - Arguments and `T` are [`Wire`](crate::Wire): owned values (`String`,
//!   not `&str`), no `impl Trait`, no generic methods, at most 12 arguments.
//!   Pass objects by reference as `Remote<dyn OtherTrait>`.
//! - The trait has no associated types or constants and no other
//!   supertraits. Type parameters are allowed with a `Wire` bound.
//! - Default method bodies are allowed; they are part of the interface: a
//!   proxy sends the call, and the served object runs its own version.
//!
//! Method options: `#[remote(name = "wire_name")]` sets the name on the
//! wire (default: the Rust name); `#[remote(requires_auth)]` refuses the
//! call on a connection that did not authenticate, and marks the method in
//! the schema for the policy checker; `#[remote(priority = high)]` (or
//! `low`, `normal`) serves the method's calls in that class, whatever the
//! connection's, when the server's handlers wait for run turns (see
//! [`Priority`](crate::Priority)). Item option: `#[remote(crate =
//! "::path::to::remote_core")]` when the crate is renamed.
//!
//! # Who is calling
//!
//! A method learns who called it from [`Peer::current`](crate::Peer::current)
//! (or `Peer::current_identity::<MyUser>()`): the connection's address, its
//! TLS client identity, and the identity the server's authenticator returned
//! ([`crate::auth`]). It is set while the handler runs, blocking methods
//! included, like [`remaining`](crate::remaining) for the deadline. A
//! server can also give each user a root of its own:
//! `server.serve(|peer| Room::for_user(peer.user()))`.
//!
//! # Your own error type
//!
//! Application errors travel as data and come back as the same type. They
//! cannot carry objects: a `Remote<_>` inside an error value does not encode
//! (the error then travels as text only), and a peer that puts a reference
//! in error data is disconnected, so errors are safe to re-raise onto
//! another connection. Their text is bounded
//! ([`Limits::max_error_text`](crate::Limits::max_error_text) and
//! [`max_error_chain`](crate::Limits::max_error_chain)). The
//! type needs `From<remote_core::Error>` so a lost connection fits in it.
//! Keep the [`Error`](crate::Error) value whole in a variant of its own (it
//! is `Wire`), so a caller asks it what happened instead of reading text:
//!
//! ```
//! use remote_core::{remote, Wire};
//!
//! #[derive(Debug, Wire, thiserror::Error)]
//! pub enum BankError {
//!     #[error("insufficient funds: {0} available")]
//!     Insufficient(u64),
//!     #[error(transparent)]
//!     Remote(#[from] remote_core::Error),
//! }
//!
//! #[remote]
//! pub trait Account {
//!     async fn withdraw(&self, amount: u64) -> Result<u64, BankError>;
//! }
//!
//! pub struct Vault(u64);
//!
//! #[remote]
//! impl Account for Vault {
//!     async fn withdraw(&self, amount: u64) -> Result<u64, BankError> {
//!         self.0.checked_sub(amount).ok_or(BankError::Insufficient(self.0))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), remote_core::Error> {
//! use std::sync::Arc;
//! use remote_core::{Connection, ConnectionBuilder, Remote};
//! let vault: Remote<dyn Account> = Remote::new(Arc::new(Vault(10)));
//! let (client, server) =
//!     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(vault)).await?;
//! let account = client.root::<dyn Account>();
//! assert!(matches!(account.withdraw(50).await, Err(BankError::Insufficient(10))));
//!
//! server.close();
//! client.closed().await;
//! match account.withdraw(1).await {
//!     Err(BankError::Remote(e)) if e.is_connection_lost() => {} // reconnect, retry, ...
//!     other => panic!("expected a lost connection, got {other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # Blocking methods
//!
//! A plain `fn` in a remote trait is a blocking method. The served object
//! runs it on tokio's blocking pool. On a proxy it blocks the calling
//! thread until the reply arrives; called on an async runtime thread it
//! returns [`Error::BlockingInAsync`](crate::Error::BlockingInAsync) instead
//! of deadlocking (see [`blocking`](crate::blocking)).
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
//!
//! #[remote]
//! pub trait Counter {
//!     fn next(&self) -> Result<u64, Error>;
//! }
//!
//! #[derive(Default)]
//! pub struct Seq(AtomicU64);
//!
//! #[remote]
//! impl Counter for Seq {
//!     fn next(&self) -> Result<u64, Error> {
//!         Ok(self.0.fetch_add(1, Ordering::SeqCst))
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Error> {
//! let served: Remote<dyn Counter> = Remote::new(Arc::new(Seq::default()));
//! let (client, _server) =
//!     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(served)).await?;
//! let counter = client.root::<dyn Counter>();
//! assert!(matches!(counter.next(), Err(Error::BlockingInAsync)));
//! let n = std::thread::spawn(move || counter.next()).join().unwrap()?;
//! assert_eq!(n, 0);
//! # Ok(()) }
//! ```
//!
//! # Generic traits
//!
//! Type parameters need a `Wire` bound. Each instance is its own interface
//! (`Store<String>` and `Store<u64>` differ); generic traits are described
//! in the schema where a signature uses an instance, not registered alone.
//!
//! ```
//! use remote_core::{remote, Error, Wire};
//!
//! #[remote]
//! pub trait Store<T: Wire> {
//!     async fn put(&self, value: T) -> Result<u64, Error>;
//!     async fn get(&self, id: u64) -> Result<Option<T>, Error>;
//! }
//!
//! fn proxies_implement_it<C: Store<String>>() {}
//! # fn main() {
//! proxies_implement_it::<StoreClient<String>>();
//! # }
//! ```
//!
//! # Prototyping: `#[remote]` on an inherent impl
//!
//! For a quick server, skip the trait: `#[remote]` on `impl ChatRoom` turns
//! every method with a `&self` receiver into the trait `ChatRoomRemote`
//! (implemented by `ChatRoom` by calling your methods, which stay callable
//! as before) with the proxy `ChatRoomClient`. Methods without a receiver
//! (constructors) stay local, and so does a method marked
//! `#[remote(skip)]`. The trait and the client take the visibility of the
//! first exposed method. Import `ChatRoomRemote` to call methods on a proxy.
//! The block is registered as an implementation of `ChatRoomRemote` (as
//! `impl Trait for Type` is), so the policy checker's default roots
//! include it.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
//!
//! #[derive(Default)]
//! pub struct ChatRoom {
//!     lines: Mutex<Vec<String>>,
//! }
//!
//! #[remote]
//! impl ChatRoom {
//!     pub async fn say(&self, line: String) -> Result<usize, Error> {
//!         let mut lines = self.lines.lock().unwrap();
//!         lines.push(line);
//!         Ok(lines.len())
//!     }
//!     pub async fn lines(&self) -> Result<Vec<String>, Error> {
//!         Ok(self.lines.lock().unwrap().clone())
//!     }
//!     #[remote(skip)]
//!     pub fn clear(&self) {
//!         self.lines.lock().unwrap().clear();
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Error> {
//! // Serve it as `dyn ChatRoomRemote` ...
//! let room = Arc::new(ChatRoom::default());
//! let served: Remote<dyn ChatRoomRemote> = Remote::new(room.clone());
//! let (client, _server) =
//!     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(served)).await?;
//!
//! // ... and the peer calls it through the generated trait.
//! let remote_room = client.root::<dyn ChatRoomRemote>();
//! assert_eq!(remote_room.say("hello".into()).await?, 1);
//! assert_eq!(room.lines().await?, ["hello"]);
//! room.clear();
//! # Ok(()) }
//! ```
//!
//! # `#[derive(Wire)]`
//!
//! Structs (named, tuple, unit) and enums (every variant kind), generic or
//! not, cross by value with `#[derive(Wire)]`. It implements serde's
//! `Serialize` and `Deserialize` as well, so do not derive those too;
//! `#[serde(...)]` attributes work as usual. Every field type must be
//! `Wire` (fields with `#[serde(skip)]` excepted). `#[wire(secret)]` on the
//! type or on a field marks data that must never reach a peer; the policy
//! checker enforces it. On an enum variant it marks all the variant's
//! fields. `#[wire(crate = "::path")]` names a renamed crate; any other
//! `#[wire(...)]` option is an error.
//!
//! The schema describes what crosses the wire, so serde attributes that
//! send something else are handled strictly: `#[serde(into)]`, `from`,
//! `try_from` and `remote` on the type are compile errors (implement `Wire`
//! by hand and describe the type that crosses), and a field with
//! `#[serde(with)]`, `serialize_with`, `deserialize_with` or `getter` is
//! described as opaque (`Ty::Opaque`), which the policy checker reports as
//! `unchecked-type`.
//!
//! ```
//! use remote_core::schema::{SchemaBuilder, TypeKind};
//! use remote_core::Wire;
//!
//! #[derive(Wire)]
//! #[serde(rename_all = "snake_case")]
//! pub enum Event {
//!     Joined { user: String },
//!     Left(String, Option<String>),
//!     Closed,
//! }
//!
//! #[derive(Wire)]
//! pub struct Login {
//!     pub user: String,
//!     #[wire(secret)]
//!     pub password: String,
//! }
//!
//! let mut b = SchemaBuilder::new();
//! b.ty::<Event>();
//! b.ty::<Login>();
//! let schema = b.finish();
//! let login = schema.types.values().find(|t| t.name == "Login").unwrap();
//! let TypeKind::Struct { fields } = &login.kind else { unreachable!() };
//! assert!(fields[1].secret && !fields[0].secret);
//! ```
