//! Every `#[remote]` form under `#![no_implicit_prelude]`, next to items that
//! shadow prelude and std names.
#![no_implicit_prelude]
#![allow(dead_code, non_camel_case_types)]

// Names a careless expansion would pick up instead of the real ones.
pub(crate) struct Result;
pub(crate) struct Error;
pub(crate) struct Box;
pub(crate) struct Arc;
pub(crate) trait Future {}
pub(crate) struct Option;
pub(crate) struct Some;
pub(crate) struct None;
pub(crate) struct Ok;
pub(crate) struct Err;
pub(crate) struct Vec;
pub(crate) struct String;
pub(crate) trait Send {}
pub(crate) trait Sync {}
pub(crate) trait Clone {}
pub(crate) trait ToString {}
pub(crate) trait From {}
pub(crate) trait Into {}
pub(crate) trait Serialize {}
pub(crate) trait Deserialize {}
pub(crate) mod core {}
pub(crate) mod std {}
pub(crate) mod serde {}
pub(crate) mod remote_core {}
pub(crate) mod inventory {}

use ::remote_core::{remote, Wire};

/// A plain struct.
#[derive(Wire, Debug, PartialEq, Clone)]
pub(crate) struct Point {
    pub(crate) x: i32,
    pub(crate) y: i32,
}

/// A tuple struct.
#[derive(Wire, Debug, PartialEq)]
pub(crate) struct Meters(pub(crate) f64);

/// A unit struct.
#[derive(Wire, Debug, PartialEq)]
pub(crate) struct Nothing;

/// An enum with every variant kind and serde attributes.
#[derive(Wire, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Shape {
    Empty,
    Circle(Point, f64),
    Rect {
        corner: Point,
        #[serde(rename = "size")]
        extent: (u32, u32),
    },
}

/// A generic value.
#[derive(Wire, Debug, PartialEq)]
pub(crate) struct Tagged<T> {
    pub(crate) tag: ::std::string::String,
    pub(crate) value: T,
    #[wire(secret)]
    pub(crate) token: ::std::option::Option<u64>,
}

/// An application error type.
#[derive(Wire, Debug, PartialEq)]
pub(crate) enum ShapeError {
    TooBig(u32),
    Remote(::std::string::String),
}

impl ::core::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        match self {
            ShapeError::TooBig(n) => ::core::write!(f, "too big: {n}"),
            ShapeError::Remote(s) => ::core::write!(f, "{s}"),
        }
    }
}

impl ::std::error::Error for ShapeError {}

impl ::core::convert::From<::remote_core::Error> for ShapeError {
    fn from(e: ::remote_core::Error) -> Self {
        ShapeError::Remote(::std::string::ToString::to_string(&e))
    }
}

/// Shapes, async and blocking.
#[remote]
pub(crate) trait Shapes {
    /// Area of a shape.
    async fn area(&self, shape: Shape) -> ::core::result::Result<f64, ShapeError>;
    /// Echoes a point (blocking).
    fn echo(
        &self,
        p: Point,
        m: Meters,
        n: Nothing,
    ) -> ::remote_core::Result<(Point, Meters, Nothing)>;
    /// Has a default body.
    async fn twice(&self, x: u32) -> ::core::result::Result<u32, ShapeError> {
        if x > 1000 {
            return ::core::result::Result::Err(ShapeError::TooBig(x));
        }
        ::core::result::Result::Ok(x * 2)
    }
    /// A blocking default.
    fn zero(&self) -> ::remote_core::Result<u8> {
        ::core::result::Result::Ok(0)
    }
    /// Renamed on the wire, only for authenticated peers.
    #[remote(name = "tag", requires_auth)]
    async fn tagged(&self, t: Tagged<u8>) -> ::remote_core::Result<Tagged<u8>>;
}

/// The implementation.
#[derive(Debug)]
pub(crate) struct Impl;

#[remote]
impl Shapes for Impl {
    async fn area(&self, shape: Shape) -> ::core::result::Result<f64, ShapeError> {
        ::core::result::Result::Ok(match shape {
            Shape::Empty => 0.0,
            Shape::Circle(_, r) => 3.0 * r * r,
            Shape::Rect { extent: (w, h), .. } => {
                if w > 100 {
                    ::core::result::Result::Err(ShapeError::TooBig(w))?;
                }
                <f64 as ::core::convert::From<u32>>::from(w * h)
            }
        })
    }
    fn echo(
        &self,
        p: Point,
        m: Meters,
        n: Nothing,
    ) -> ::remote_core::Result<(Point, Meters, Nothing)> {
        ::core::result::Result::Ok((p, m, n))
    }
    async fn tagged(&self, t: Tagged<u8>) -> ::remote_core::Result<Tagged<u8>> {
        ::core::result::Result::Ok(t)
    }
}

/// A generic interface.
#[remote]
pub(crate) trait Store<T: ::remote_core::Wire> {
    async fn put(&self, value: T) -> ::remote_core::Result<u64>;
    async fn get(&self, id: u64) -> ::remote_core::Result<::std::option::Option<T>>;
}

/// A generic implementation (not registered: it is generic).
#[derive(Debug, Default)]
pub(crate) struct MemStore<T> {
    pub(crate) items: ::std::sync::Mutex<::std::vec::Vec<T>>,
}

#[remote]
impl<T: ::remote_core::Wire + ::core::clone::Clone + ::core::marker::Sync> Store<T>
    for MemStore<T>
{
    async fn put(&self, value: T) -> ::remote_core::Result<u64> {
        let mut items = self.items.lock().unwrap();
        items.push(value);
        ::core::result::Result::Ok(items.len() as u64 - 1)
    }
    async fn get(&self, id: u64) -> ::remote_core::Result<::std::option::Option<T>> {
        let items = self.items.lock().unwrap();
        ::core::result::Result::Ok(items.get(id as usize).cloned())
    }
}

/// An object exposed through its inherent methods.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    pub(crate) n: ::std::sync::atomic::AtomicU64,
}

#[remote]
impl Counter {
    /// Not exposed: no receiver.
    pub(crate) fn new() -> Self {
        Counter {
            n: ::std::sync::atomic::AtomicU64::new(0),
        }
    }
    /// Adds and returns the new value.
    pub(crate) async fn add(&self, k: u64) -> ::remote_core::Result<u64> {
        ::core::result::Result::Ok(self.n.fetch_add(k, ::std::sync::atomic::Ordering::SeqCst) + k)
    }
    /// Blocking read.
    pub(crate) fn get(&self) -> ::remote_core::Result<u64> {
        ::core::result::Result::Ok(self.n.load(::std::sync::atomic::Ordering::SeqCst))
    }
    /// Kept local.
    #[remote(skip)]
    pub(crate) fn reset(&self) -> u64 {
        self.n.swap(0, ::std::sync::atomic::Ordering::SeqCst)
    }
}
