//! Making calls (proxy side) and answering them (serving side).

mod args;
mod handle;
mod reply;
mod scratch;

pub use args::Args;
pub use handle::Handle;
pub(super) use handle::{Finish, Prepared, Route};
pub(super) use reply::Inline;
pub use reply::{CallCx, IntoReply, Reply};
pub(super) use scratch::with_scratch_on;
