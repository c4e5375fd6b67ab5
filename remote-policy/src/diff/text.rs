//! Short Rust-like names of schema types, for diff messages.

use remote_core::schema::{short_name, Ty};

/// `u32`, `Option<String>`, `String (max 32 bytes)`, `Remote<dyn Room>`, `Msg`.
///
/// ```
/// use remote_core::schema::Ty;
/// use remote_policy::diff::ty_text;
/// let ty = Ty::Option(Box::new(Ty::String { max_len: Some(32) }));
/// assert_eq!(ty_text(&ty), "Option<String (max 32)>");
/// ```
pub fn ty_text(ty: &Ty) -> String {
    let max = |m: &Option<u64>| match m {
        Some(n) => format!(" (max {n})"),
        None => String::new(),
    };
    match ty {
        Ty::Unit => "()".to_owned(),
        Ty::Bool => "bool".to_owned(),
        Ty::Int { bits, signed } => format!("{}{bits}", if *signed { "i" } else { "u" }),
        Ty::Float { bits } => format!("f{bits}"),
        Ty::Char => "char".to_owned(),
        Ty::String { max_len } => format!("String{}", max(max_len)),
        Ty::Bytes { max_len } => format!("Bytes{}", max(max_len)),
        Ty::Seq { elem, max_len } => format!("Vec<{}>{}", ty_text(elem), max(max_len)),
        Ty::Array { elem, len } => format!("[{}; {len}]", ty_text(elem)),
        Ty::Map {
            key,
            value,
            max_len,
        } => format!("Map<{}, {}>{}", ty_text(key), ty_text(value), max(max_len)),
        Ty::Option(inner) => format!("Option<{}>", ty_text(inner)),
        Ty::Result { ok, err } => format!("Result<{}, {}>", ty_text(ok), ty_text(err)),
        Ty::Tuple(items) => {
            let items: Vec<String> = items.iter().map(ty_text).collect();
            format!("({})", items.join(", "))
        }
        Ty::Named { path } => short_name(path),
        Ty::Capability { interface } => format!("Remote<dyn {}>", short_name(interface)),
        Ty::Stream { item, .. } => format!("Stream<{}>", ty_text(item)),
        Ty::RemoteError => "remote_core::Error".to_owned(),
        Ty::Opaque { name, .. } => name.clone(),
        other => format!("{other:?}"),
    }
}
