//! Client stub generators, driven only by a [`Schema`](crate::Schema).
//!
//! ```
//! use remote_policy::testing::*;
//! let schema = schema_with(vec![iface("app::Chat", vec![method("count", vec![], u64_ty())])], vec![]);
//! let py = remote_policy::stubs::python::generate(&schema);
//! assert!(py.contains("class Chat(typing.Protocol):"));
//! assert!(py.contains("async def count(self) -> int:"));
//! ```

pub mod python;
