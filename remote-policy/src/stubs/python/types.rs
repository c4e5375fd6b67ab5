//! How schema types map to Python: annotations for the Protocols and
//! dataclasses, and type descriptors for the `remote_rpc` runtime.

use remote_core::schema::Ty;

use super::names::Names;

/// A type descriptor for the `remote_rpc` runtime (see `remote_rpc.typed`).
pub(super) fn desc(ty: &Ty) -> String {
    match ty {
        Ty::Unit => lit("unit"),
        Ty::Bool => lit("bool"),
        Ty::Int { .. } => lit("int"),
        Ty::Float { .. } => lit("float"),
        Ty::Char | Ty::String { .. } => lit("str"),
        Ty::Bytes { .. } => lit("bytes"),
        Ty::Seq { elem, .. } | Ty::Array { elem, .. } => format!("(\"list\", {})", desc(elem)),
        Ty::Map { key, value, .. } => format!("(\"map\", {}, {})", desc(key), desc(value)),
        Ty::Option(inner) => format!("(\"opt\", {})", desc(inner)),
        Ty::Result { ok, err } => format!("(\"result\", {}, {})", desc(ok), desc(err)),
        Ty::Tuple(items) => {
            let items: Vec<String> = items.iter().map(|t| format!("{}, ", desc(t))).collect();
            format!("(\"tuple\", ({}))", items.concat())
        }
        Ty::Named { path } => format!("(\"named\", {})", lit(path)),
        Ty::Capability { interface } => format!("(\"cap\", {})", lit(interface)),
        Ty::Stream { item, .. } => format!("(\"stream\", {})", desc(item)),
        Ty::RemoteError => lit("error"),
        _ => lit("any"),
    }
}

/// A Python string literal (JSON escapes are valid Python escapes).
pub(super) fn lit(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

pub(super) fn annotation(names: &Names, ty: &Ty) -> String {
    let a = |t: &Ty| annotation(names, t);
    match ty {
        Ty::Unit => "None".into(),
        Ty::Bool => "bool".into(),
        Ty::Int { .. } => "int".into(),
        Ty::Float { .. } => "float".into(),
        Ty::Char | Ty::String { .. } => "str".into(),
        Ty::Bytes { .. } => "bytes".into(),
        Ty::Seq { elem, .. } | Ty::Array { elem, .. } => format!("typing.List[{}]", a(elem)),
        Ty::Map { key, value, .. } => format!("typing.Dict[{}, {}]", a(key), a(value)),
        Ty::Option(inner) => format!("typing.Optional[{}]", a(inner)),
        Ty::Result { ok, err } => format!("typing.Union[Ok[{}], Err[{}]]", a(ok), a(err)),
        Ty::Tuple(items) if items.is_empty() => "typing.Tuple[()]".into(),
        Ty::Tuple(items) => {
            format!(
                "typing.Tuple[{}]",
                items.iter().map(a).collect::<Vec<_>>().join(", ")
            )
        }
        Ty::Named { path } => names
            .types
            .get(path)
            .cloned()
            .unwrap_or_else(|| "typing.Any".into()),
        Ty::Capability { interface } => names
            .interfaces
            .get(interface)
            .cloned()
            .unwrap_or_else(|| "typing.Any".into()),
        Ty::Stream { item, .. } => format!("typing.AsyncIterator[{}]", a(item)),
        Ty::RemoteError => "RemoteError".into(),
        _ => "typing.Any".into(),
    }
}
