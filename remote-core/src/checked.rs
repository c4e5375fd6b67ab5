//! How a `#[remote]` trait's `Interface` impl reaches its proxy and
//! dispatcher without requiring the impls that a mistake breaks.
//!
//! The proxy's `impl Chat for ChatClient` and the dispatcher's
//! `impl Dispatch for __ChatDispatch` carry a `where` clause naming every
//! type of the trait's signatures (`for<'__w> Ty: Wire`), so a type that
//! cannot cross is not reported again inside them. The `Interface` impl
//! cannot carry that clause (proving `Remote<dyn Chat>: Wire` needs it: a
//! cycle), yet it builds both: a plain cast there would report the type a
//! second and third time ("required for `ChatClient` to implement `Chat`").
//! So the generated [`Checked`] impl (with the same `where` clause) does the
//! casts, and the `Interface` impl picks it by method resolution
//! ("autoref specialization"): `(&&Probe::<D, dyn Chat>::NEW).dispatcher(..)`
//! resolves to [`ViaChecked`] when `D: Checked` holds and to
//! [`ViaUnchecked`] otherwise. The latter is chosen only in a crate that
//! does not compile: the type's one error is reported where the schema
//! describes it (`describe_wire`).
//!
//! `#[derive(Wire)]` does the same for each field: serde's code for the
//! field goes through `serialize_with` / `deserialize_with` functions that
//! use [`FieldProbe`], and the schema's field type too, so a field that is
//! not `Wire` is reported once, by the derive's `assert_wire::<Field>()`,
//! not again as a missing `Serialize` and `Deserialize` impl. (A `where`
//! clause cannot do it there: `struct Tree { children: Vec<Tree> }` would
//! need itself.)

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserializer, Serializer};

use crate::deferred::Deferred;
use crate::interface::{Dispatch, Handle};
use crate::schema::{SchemaBuilder, Ty};
use crate::Wire;

/// The casts of a `#[remote]` trait's `Interface` impl, implemented by its
/// dispatcher under the `where` clause that names every type in the
/// trait's signatures.
pub trait Checked {
    /// `dyn Chat`.
    type Interface: ?Sized;
    /// A local object behind its dispatcher.
    fn into_dispatch(this: Arc<Self::Interface>) -> Arc<dyn Dispatch>;
    /// A proxy for the object behind `handle`.
    fn proxy(handle: Handle) -> Arc<Self::Interface>;
    /// The object a local call in flight will return.
    fn deferred(target: Deferred<Self::Interface>) -> Arc<Self::Interface>;
}

/// The receiver that selects [`ViaChecked`] or [`ViaUnchecked`]: `D` is the
/// dispatcher, `I` the interface (`dyn Chat`).
pub struct Probe<D, I: ?Sized>(PhantomData<Marker<D, I>>);

/// What a [`Probe`] names (as a function type: no auto-trait or drop effects).
type Marker<D, I> = fn() -> (D, Arc<I>);

impl<D, I: ?Sized> std::fmt::Debug for Probe<D, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe")
    }
}

impl<D, I: ?Sized> Probe<D, I> {
    /// The probe (a zero-sized value).
    pub const NEW: Self = Probe(PhantomData);
}

/// Selected when the dispatcher's [`Checked`] impl holds: every type in
/// the trait's signatures crosses the wire.
pub trait ViaChecked<I: ?Sized> {
    /// [`Checked::into_dispatch`].
    fn dispatcher(&self, this: Arc<I>) -> Arc<dyn Dispatch>;
    /// [`Checked::proxy`].
    fn proxy(&self, handle: Handle) -> Arc<I>;
    /// [`Checked::deferred`].
    fn deferred(&self, target: Deferred<I>) -> Arc<I>;
}

impl<D: Checked<Interface = I>, I: ?Sized> ViaChecked<I> for &Probe<D, I> {
    #[inline]
    fn dispatcher(&self, this: Arc<I>) -> Arc<dyn Dispatch> {
        D::into_dispatch(this)
    }
    #[inline]
    fn proxy(&self, handle: Handle) -> Arc<I> {
        D::proxy(handle)
    }
    #[inline]
    fn deferred(&self, target: Deferred<I>) -> Arc<I> {
        D::deferred(target)
    }
}

/// Selected when the dispatcher's [`Checked`] impl does not hold, that is
/// only in a crate with an error at a type in the trait's signatures.
pub trait ViaUnchecked<I: ?Sized> {
    /// Never compiled into a program (see [`ViaUnchecked`]).
    fn dispatcher(&self, this: Arc<I>) -> Arc<dyn Dispatch>;
    /// Never compiled into a program (see [`ViaUnchecked`]).
    fn proxy(&self, handle: Handle) -> Arc<I>;
    /// Never compiled into a program (see [`ViaUnchecked`]).
    fn deferred(&self, target: Deferred<I>) -> Arc<I>;
}

impl<D, I: ?Sized> ViaUnchecked<I> for Probe<D, I> {
    fn dispatcher(&self, _: Arc<I>) -> Arc<dyn Dispatch> {
        unchecked::<D>()
    }
    fn proxy(&self, _: Handle) -> Arc<I> {
        unchecked::<D>()
    }
    fn deferred(&self, _: Deferred<I>) -> Arc<I> {
        unchecked::<D>()
    }
}

/// The receiver that selects [`FieldWire`] or [`FieldNotWire`] for a field
/// of type `T` of a `#[derive(Wire)]` type.
pub struct FieldProbe<T>(PhantomData<fn() -> T>);

impl<T> std::fmt::Debug for FieldProbe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldProbe")
    }
}

impl<T> FieldProbe<T> {
    /// The probe (a zero-sized value).
    pub const NEW: Self = FieldProbe(PhantomData);
}

/// Selected when the field's type is `Wire`: its own serde impls and
/// description.
pub trait FieldWire<T> {
    /// `value.serialize(s)`.
    fn serialize<S: Serializer>(&self, value: &T, s: S) -> Result<S::Ok, S::Error>;
    /// `T::deserialize(d)`.
    fn deserialize<'de, D: Deserializer<'de>>(&self, d: D) -> Result<T, D::Error>;
    /// `b.ty::<T>()`.
    fn describe(&self, b: &mut SchemaBuilder) -> Ty;
    /// `T` counted when sizing, for a field described as opaque.
    fn sized(&self, b: &mut SchemaBuilder);
}

impl<T: Wire> FieldWire<T> for &FieldProbe<T> {
    #[inline]
    fn serialize<S: Serializer>(&self, value: &T, s: S) -> Result<S::Ok, S::Error> {
        value.serialize(s)
    }
    #[inline]
    fn deserialize<'de, D: Deserializer<'de>>(&self, d: D) -> Result<T, D::Error> {
        crate::codec::stack::decode_field::<T, D>(d)
    }
    #[inline]
    fn describe(&self, b: &mut SchemaBuilder) -> Ty {
        b.ty::<T>()
    }
    #[inline]
    fn sized(&self, b: &mut SchemaBuilder) {
        b.sized::<T>()
    }
}

/// Selected when the field's type is not `Wire`, that is only in a crate
/// where the derive's `assert_wire` for the field fails to compile.
pub trait FieldNotWire<T> {
    /// Never compiled into a program (see [`FieldNotWire`]).
    fn serialize<S: Serializer>(&self, value: &T, s: S) -> Result<S::Ok, S::Error>;
    /// Never compiled into a program (see [`FieldNotWire`]).
    fn deserialize<'de, D: Deserializer<'de>>(&self, d: D) -> Result<T, D::Error>;
    /// Never compiled into a program (see [`FieldNotWire`]).
    fn describe(&self, b: &mut SchemaBuilder) -> Ty;
    /// Never compiled into a program (see [`FieldNotWire`]).
    fn sized(&self, b: &mut SchemaBuilder);
}

impl<T> FieldNotWire<T> for FieldProbe<T> {
    fn serialize<S: Serializer>(&self, _: &T, _: S) -> Result<S::Ok, S::Error> {
        unchecked::<T>()
    }
    fn deserialize<'de, D: Deserializer<'de>>(&self, _: D) -> Result<T, D::Error> {
        unchecked::<T>()
    }
    fn describe(&self, _: &mut SchemaBuilder) -> Ty {
        unchecked::<T>()
    }
    fn sized(&self, _: &mut SchemaBuilder) {
        unchecked::<T>()
    }
}

/// Fails the build if it is ever instantiated: type checking picks
/// [`ViaUnchecked`] or [`FieldNotWire`] only where the type's own check
/// (`describe_wire`, `assert_wire`) already failed to compile, so no
/// program reaches this.
fn unchecked<D>() -> ! {
    let () = Unchecked::<D>::FAIL;
    unreachable!("generated code for a type that is not Wire")
}

struct Unchecked<D>(PhantomData<D>);

impl<D> Unchecked<D> {
    const FAIL: () = panic!(
        "code generated for a type that is not `Wire` was compiled \
         (its error is reported at the type)"
    );
}
