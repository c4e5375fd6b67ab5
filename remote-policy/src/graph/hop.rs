//! The vocabulary of a chain: who owns a reachable object ([`Exposure`]),
//! which way a value flows ([`Direction`]), which part of a method it is
//! ([`Position`]), the [`Hop`]s from a root to a finding, and how they are
//! named and keyed.

use std::fmt;

use remote_core::schema::{short_name, Location, Schema};
use serde::Serialize;

/// Who owns a reachable interface, and so who calls its methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exposure {
    /// We own the object; the peer holds a reference and calls its methods.
    Served,
    /// The peer owns the object (a callback it gave us); we call its methods.
    Held,
}

impl Exposure {
    /// Which way a method's arguments flow.
    ///
    /// ```
    /// use remote_policy::graph::{Direction, Exposure};
    /// assert_eq!(Exposure::Served.args(), Direction::In);
    /// assert_eq!(Exposure::Held.args(), Direction::Out);
    /// ```
    pub fn args(self) -> Direction {
        match self {
            Exposure::Served => Direction::In,
            Exposure::Held => Direction::Out,
        }
    }

    /// Which way a method's return value and error flow.
    ///
    /// ```
    /// use remote_policy::graph::{Direction, Exposure};
    /// assert_eq!(Exposure::Served.returns(), Direction::Out);
    /// ```
    pub fn returns(self) -> Direction {
        match self {
            Exposure::Served => Direction::Out,
            Exposure::Held => Direction::In,
        }
    }
}

/// Which way a value crosses the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From us to the peer.
    Out,
    /// From the peer to us.
    In,
}

impl Direction {
    /// The exposure of a capability found in a value flowing this way: one we
    /// send out is served by us, one we receive is held (called by us).
    ///
    /// ```
    /// use remote_policy::graph::{Direction, Exposure};
    /// assert_eq!(Direction::In.capability(), Exposure::Held);
    /// ```
    pub fn capability(self) -> Exposure {
        match self {
            Direction::Out => Exposure::Served,
            Direction::In => Exposure::Held,
        }
    }
}

/// Which part of a method a value is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Position {
    /// An argument, by name.
    Arg(String),
    /// The `T` of `Result<T, E>`.
    Returns,
    /// The `E` of `Result<T, E>`.
    Error,
}

/// One step of a chain from a root to a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hop {
    /// The root interface a peer starts with.
    Root {
        /// Interface key.
        interface: String,
    },
    /// A method called by the peer (`served`) or by us (`held`).
    Method {
        /// Interface key.
        interface: String,
        /// Rust method name.
        method: String,
        /// Who owns the object, so who calls the method.
        exposure: Exposure,
    },
    /// A part of the method: argument, return value or error.
    Position {
        /// The part.
        position: Position,
    },
    /// A named struct or enum.
    Type {
        /// Key in `Schema::types`.
        path: String,
    },
    /// An enum variant.
    Variant {
        /// Variant name.
        name: String,
    },
    /// A struct or variant field.
    Field {
        /// Field name.
        name: String,
    },
    /// An element of a sequence or array.
    Element,
    /// A map key.
    Key,
    /// A map value.
    Value,
    /// The inside of an `Option`.
    Some,
    /// The `Ok` of a `Result` value.
    Ok,
    /// The `Err` of a `Result` value.
    Err,
    /// A tuple element.
    Tuple {
        /// Index.
        index: usize,
    },
    /// An item of a stream.
    Item,
    /// A capability handed over, making another interface reachable.
    Capability {
        /// Interface key.
        interface: String,
        /// Whether we serve it (sent out) or hold it (received: a callback).
        exposure: Exposure,
    },
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(&short_name, f)
    }
}

impl Hop {
    /// Writes the hop, naming interfaces and types with `name`.
    fn render(&self, name: &dyn Fn(&str) -> String, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::Root { interface } => write!(f, "root {}", name(interface)),
            Hop::Method {
                interface,
                method,
                exposure: Exposure::Served,
            } => {
                write!(f, "{}.{}()", name(interface), method)
            }
            Hop::Method {
                interface,
                method,
                exposure: Exposure::Held,
            } => {
                write!(f, "{}.{}() [we call the peer]", name(interface), method)
            }
            Hop::Position {
                position: Position::Arg(name),
            } => write!(f, "arg {name}"),
            Hop::Position {
                position: Position::Returns,
            } => f.write_str("returns"),
            Hop::Position {
                position: Position::Error,
            } => f.write_str("error"),
            Hop::Type { path } => f.write_str(&name(path)),
            Hop::Variant { name } => write!(f, "::{name}"),
            Hop::Field { name } => write!(f, ".{name}"),
            Hop::Element => f.write_str("[_]"),
            Hop::Key => f.write_str("{key}"),
            Hop::Value => f.write_str("{value}"),
            Hop::Some => f.write_str("Some"),
            Hop::Ok => f.write_str("Ok"),
            Hop::Err => f.write_str("Err"),
            Hop::Tuple { index } => write!(f, ".{index}"),
            Hop::Item => f.write_str("stream item"),
            Hop::Capability {
                interface,
                exposure: Exposure::Served,
            } => {
                write!(f, "Remote<dyn {}>", name(interface))
            }
            Hop::Capability {
                interface,
                exposure: Exposure::Held,
            } => {
                write!(f, "callback Remote<dyn {}>", name(interface))
            }
        }
    }
}

/// Renders a chain as `root Chat → Chat.login() → returns → Session → .token`.
///
/// ```
/// use remote_policy::graph::{chain_to_string, Hop};
/// let chain = vec![Hop::Root { interface: "app::Chat".into() }, Hop::Type { path: "app::Msg".into() }];
/// assert_eq!(chain_to_string(&chain), "root Chat → Msg");
/// ```
pub fn chain_to_string(chain: &[Hop]) -> String {
    let parts: Vec<String> = chain.iter().map(Hop::to_string).collect();
    parts.join(" → ")
}

/// Display names of a schema's interfaces and types: the shortest suffix of
/// the path (`Chat`, then `v2::Chat`, …) that no other key shares, so chains
/// stay unambiguous when two modules have a trait or type of one name.
///
/// ```
/// use remote_policy::graph::{Hop, Names};
/// use remote_policy::testing::*;
/// let schema = schema_with(vec![iface("app::v1::Chat", vec![]), iface("app::v2::Chat", vec![]), iface("app::Room", vec![])], vec![]);
/// let names = Names::new(&schema);
/// let chain = [Hop::Root { interface: "app::v2::Chat".into() }, Hop::Capability { interface: "app::Room".into(), exposure: remote_policy::graph::Exposure::Served }];
/// assert_eq!(names.chain(&chain), "root v2::Chat → Remote<dyn Room>");
/// ```
#[derive(Debug, Default)]
pub struct Names {
    names: std::collections::HashMap<String, String>,
}

impl Names {
    /// The names of every interface and type of `schema`.
    pub fn new(schema: &Schema) -> Names {
        let keys: Vec<&String> = schema
            .interfaces
            .keys()
            .chain(schema.types.keys())
            .collect();
        let suffix = |key: &str, k: usize| -> String {
            let base_end = key.find('<').unwrap_or(key.len());
            let segments: Vec<&str> = key[..base_end].split("::").collect();
            let start = segments.len().saturating_sub(k);
            format!("{}{}", segments[start..].join("::"), &key[base_end..])
        };
        let mut names = std::collections::HashMap::new();
        let mut pending: Vec<&String> = keys.clone();
        let mut k = 1;
        while !pending.is_empty() && k < 64 {
            let mut count: std::collections::HashMap<String, usize> =
                std::collections::HashMap::new();
            for key in &keys {
                *count.entry(suffix(key, k)).or_default() += 1;
            }
            pending.retain(|key| {
                let s = suffix(key, k);
                let depth = key.split('<').next().unwrap_or(key).split("::").count();
                if count[&s] == 1 || k >= depth {
                    names.insert((*key).clone(), s);
                    false
                } else {
                    true
                }
            });
            k += 1;
        }
        Names { names }
    }

    /// The display name of a key (its short name if the schema lacks it).
    pub fn name(&self, key: &str) -> String {
        self.names
            .get(key)
            .cloned()
            .unwrap_or_else(|| short_name(key))
    }

    /// A chain as text with these names.
    pub fn chain(&self, chain: &[Hop]) -> String {
        struct Show<'a>(&'a Hop, &'a Names);
        impl fmt::Display for Show<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.render(&|k| self.1.name(k), f)
            }
        }
        let parts: Vec<String> = chain.iter().map(|h| Show(h, self).to_string()).collect();
        parts.join(" → ")
    }
}

/// The source location of a hop, where the schema knows it.
///
/// ```
/// use remote_core::schema::Schema;
/// use remote_policy::graph::{hop_location, Hop};
/// assert!(hop_location(&Schema::default(), &Hop::Element).is_none());
/// ```
pub fn hop_location<'s>(schema: &'s Schema, hop: &Hop) -> Option<&'s Location> {
    let loc = match hop {
        Hop::Root { interface } | Hop::Capability { interface, .. } => {
            &schema.interfaces.get(interface)?.location
        }
        Hop::Method {
            interface, method, ..
        } => {
            &schema
                .interfaces
                .get(interface)?
                .methods
                .iter()
                .find(|m| &m.name == method)?
                .location
        }
        Hop::Type { path } => &schema.types.get(path)?.location,
        _ => return None,
    };
    (!loc.file.is_empty()).then_some(loc)
}

/// The policy key of a method part (see [`Site::key`](super::Site::key)).
///
/// ```
/// use remote_policy::graph::{position_key, Position};
/// assert_eq!(position_key("app::Chat", "post", &Position::Arg("text".into())), "app::Chat.post(text)");
/// assert_eq!(position_key("app::Chat", "post", &Position::Returns), "app::Chat.post->returns");
/// ```
pub fn position_key(interface: &str, method: &str, position: &Position) -> String {
    match position {
        Position::Arg(name) => format!("{interface}.{method}({name})"),
        Position::Returns => format!("{interface}.{method}->returns"),
        Position::Error => format!("{interface}.{method}->error"),
    }
}
