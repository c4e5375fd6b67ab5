//! The capability graph: what a peer can reach from each served root, and
//! which way every value flows.
//!
//! A peer starts with one capability, the root. Calling a method of an
//! interface we *serve* sends its arguments **in** (from the peer to us) and
//! its return value and error **out**. A capability that flows out is a new
//! object we serve; one that flows in is the peer's object that *we* call (a
//! callback), so the direction of everything attached to it flips: its
//! arguments flow out, its return values flow in.
//!
//! [`Graph::build`] walks this breadth first, so every reachable interface is
//! recorded with the shortest [`Hop`] chain from its root. A method marked
//! `requires_auth` on a served interface is a gate: the graph first explores
//! everything reachable without passing one, then the rest, and marks each
//! node `pre_auth` accordingly.
//!
//! ```
//! use remote_core::schema::{Schema, Ty};
//! use remote_policy::graph::{Exposure, Graph};
//! use remote_policy::testing::{iface, method};
//!
//! let mut schema = Schema::default();
//! let room = iface("app::Room", vec![method("say", vec![("text", Ty::String { max_len: None })], Ty::Unit)]);
//! let chat = iface("app::Chat", vec![method("join", vec![], Ty::Capability { interface: "app::Room".into() })]);
//! schema.interfaces.insert(room.path.clone(), room);
//! schema.interfaces.insert(chat.path.clone(), chat);
//!
//! let graph = Graph::build(&schema, &["app::Chat".to_owned()]).unwrap();
//! let reach = &graph.roots[0];
//! assert_eq!(reach.nodes.len(), 2);
//! assert_eq!(reach.nodes[1].interface, "app::Room");
//! assert_eq!(reach.nodes[1].exposure, Exposure::Served);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt;

use remote_core::schema::{
    short_name, FieldDef, InterfaceDef, Location, MethodDef, Schema, Ty, TypeDef, TypeKind,
};
use serde::Serialize;

use crate::caps::{capabilities_of, hops_to, part_ty, CapCache, TypeCaps};
use crate::Error;

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

/// An interface reachable from a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Interface key.
    pub interface: String,
    /// Who calls its methods.
    pub exposure: Exposure,
    /// Reachable without passing a `requires_auth` method.
    pub pre_auth: bool,
    /// Shortest chain from the root, ending with the root or a `Capability` hop.
    pub chain: Vec<Hop>,
}

/// Everything reachable from one root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootReach {
    /// The root interface key.
    pub root: String,
    /// Reachable interfaces, the root first, in breadth-first order.
    pub nodes: Vec<Node>,
}

/// One place where a value crosses the connection: a part of a reachable method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site<'s> {
    /// The interface.
    pub interface: &'s InterfaceDef,
    /// The method.
    pub method: &'s MethodDef,
    /// Who calls the method.
    pub exposure: Exposure,
    /// Which part of it.
    pub position: Position,
    /// The value's type.
    pub ty: &'s Ty,
    /// Which way the value flows.
    pub direction: Direction,
    /// Reachable without authentication (and the method itself needs none).
    pub pre_auth: bool,
    /// Root of the chain.
    pub root: &'s str,
    /// Chain from the root down to the position hop.
    pub chain: Vec<Hop>,
}

impl Site<'_> {
    /// The key policy entries use for this site: `app::Chat.post(text)`,
    /// `app::Chat.post->returns`, `app::Chat.post->error`.
    pub fn key(&self) -> String {
        position_key(&self.interface.path, &self.method.name, &self.position)
    }
}

/// The policy key of a method part (see [`Site::key`]).
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

/// The capability graph of a schema from a set of roots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Graph {
    /// One entry per root, in the order given.
    pub roots: Vec<RootReach>,
    /// Capabilities named by a reachable method but missing from the schema.
    pub missing_interfaces: Vec<(String, Vec<Hop>)>,
}

impl Graph {
    /// Walks the schema from each root.
    ///
    /// Fails if a root is not an interface of the schema.
    pub fn build(schema: &Schema, roots: &[String]) -> Result<Graph, Error> {
        let mut graph = Graph {
            roots: Vec::new(),
            missing_interfaces: Vec::new(),
        };
        let mut missing = BTreeSet::new();
        let mut cache = CapCache::new();
        for root in roots {
            if !schema.interfaces.contains_key(root) {
                return Err(Error::UnknownRoot(root.clone()));
            }
            let reach = explore(
                schema,
                root,
                &mut cache,
                &mut |iface, chain| {
                    if missing.insert(iface.to_owned()) {
                        graph.missing_interfaces.push((iface.to_owned(), chain));
                    }
                },
                &|_, _| false,
            );
            graph.roots.push(reach);
        }
        Ok(graph)
    }

    /// Every method part reachable from some root, each once: where several
    /// roots reach the same part, the pre-authentication chain wins, then
    /// the shortest.
    pub fn sites<'s>(&'s self, schema: &'s Schema) -> Vec<Site<'s>> {
        // Every part of a node shares its auth state and chain prefix, so the
        // best node per (interface, exposure) gives the best chain for each part.
        let mut best: BTreeMap<(&str, Exposure), (&Node, &str)> = BTreeMap::new();
        for reach in &self.roots {
            for node in &reach.nodes {
                let key = (node.interface.as_str(), node.exposure);
                let better = match best.get(&key) {
                    None => true,
                    Some((old, _)) => {
                        (!old.pre_auth && node.pre_auth)
                            || (old.pre_auth == node.pre_auth && node.chain.len() < old.chain.len())
                    }
                };
                if better {
                    best.insert(key, (node, &reach.root));
                }
            }
        }
        let mut out = Vec::new();
        for (node, root) in best.into_values() {
            if let Some(iface) = schema.interfaces.get(&node.interface) {
                for m in &iface.methods {
                    out.extend(method_sites(iface, m, node, root));
                }
            }
        }
        out
    }
}

/// Everything reachable from `root` without calling a method for which
/// `skip(interface, method)` holds: the paths an `[[allow]]` with `via`
/// does not cover.
pub(crate) fn reach_avoiding(
    schema: &Schema,
    root: &str,
    skip: &dyn Fn(&str, &str) -> bool,
) -> RootReach {
    explore(schema, root, &mut CapCache::new(), &mut |_, _| {}, skip)
}

/// The parts of one method of a reachable interface.
pub(crate) fn method_sites<'s>(
    iface: &'s InterfaceDef,
    method: &'s MethodDef,
    node: &Node,
    root: &'s str,
) -> Vec<Site<'s>> {
    let pre_auth = node.pre_auth && !gated(node.exposure, method);
    let mut base = node.chain.clone();
    base.push(Hop::Method {
        interface: iface.path.clone(),
        method: method.name.clone(),
        exposure: node.exposure,
    });
    let parts = method
        .args
        .iter()
        .map(|a| (Position::Arg(a.name.clone()), &a.ty, node.exposure.args()))
        .chain([
            (Position::Returns, &method.returns, node.exposure.returns()),
            (Position::Error, &method.error, node.exposure.returns()),
        ]);
    parts
        .map(|(position, ty, direction)| {
            let mut chain = base.clone();
            chain.push(Hop::Position {
                position: position.clone(),
            });
            Site {
                interface: iface,
                method,
                exposure: node.exposure,
                position,
                ty,
                direction,
                pre_auth,
                root,
                chain,
            }
        })
        .collect()
}

/// A `requires_auth` method on an object we serve gates what lies behind it.
/// On a peer's object we call, the mark is the peer's business, not ours.
pub(crate) fn gated(exposure: Exposure, method: &MethodDef) -> bool {
    exposure == Exposure::Served && method.requires_auth
}

/// Breadth-first search from one root: first without passing an auth gate,
/// then through the gates.
fn explore<'s>(
    schema: &'s Schema,
    root: &str,
    cache: &mut CapCache<'s>,
    missing: &mut impl FnMut(&str, Vec<Hop>),
    skip: &dyn Fn(&str, &str) -> bool,
) -> RootReach {
    let mut nodes = vec![Node {
        interface: root.to_owned(),
        exposure: Exposure::Served,
        pre_auth: true,
        chain: vec![Hop::Root {
            interface: root.to_owned(),
        }],
    }];
    let mut index: HashSet<(&str, Exposure)> = HashSet::new();
    if let Some((key, _)) = schema.interfaces.get_key_value(root) {
        index.insert((key.as_str(), Exposure::Served));
    }
    // (node index, method index) pairs whose capabilities wait for phase two.
    let mut gates = Vec::new();
    for pre_auth in [true, false] {
        let mut queue: VecDeque<(usize, Option<usize>)> = if pre_auth {
            VecDeque::from([(0, None)])
        } else {
            gates.drain(..).map(|(n, m)| (n, Some(m))).collect()
        };
        while let Some((n, only)) = queue.pop_front() {
            let Some((key, iface)) = schema.interfaces.get_key_value(&nodes[n].interface) else {
                continue;
            };
            let (node_exposure, node_pre_auth) = (nodes[n].exposure, nodes[n].pre_auth);
            // Keyed by the map key, which `check` requires to equal the path.
            let type_caps = cache.types.get_or_insert_with(|| TypeCaps::new(schema));
            let caps = cache
                .parts
                .entry(key.as_str())
                .or_insert_with(|| capabilities_of(type_caps, iface))
                .clone();
            let mut deferred = BTreeSet::new();
            for (m, p, interface) in caps {
                let method = &iface.methods[m];
                if only.is_some_and(|o| o != m) || skip(key, &method.name) {
                    continue;
                }
                if pre_auth && gated(node_exposure, method) {
                    if deferred.insert(m) {
                        gates.push((n, m));
                    }
                    continue;
                }
                let direction = if p < method.args.len() {
                    node_exposure.args()
                } else {
                    node_exposure.returns()
                };
                let exposure = direction.capability();
                let known = schema.interfaces.get_key_value(interface);
                if let Some((k, _)) = known {
                    if index.contains(&(k.as_str(), exposure)) {
                        continue; // reached already, by a chain at least as short
                    }
                }
                let position = match p.checked_sub(method.args.len()) {
                    None => Position::Arg(method.args[p].name.clone()),
                    Some(0) => Position::Returns,
                    Some(_) => Position::Error,
                };
                let mut chain = nodes[n].chain.clone();
                chain.push(Hop::Method {
                    interface: key.clone(),
                    method: method.name.clone(),
                    exposure: node_exposure,
                });
                chain.push(Hop::Position { position });
                let inner = cache
                    .hops
                    .entry((key.as_str(), m, p, interface))
                    .or_insert_with(|| hops_to(schema, part_ty(method, p), interface));
                chain.extend(inner.iter().cloned());
                chain.push(Hop::Capability {
                    interface: interface.to_owned(),
                    exposure,
                });
                let Some((k, _)) = known else {
                    missing(interface, chain);
                    continue;
                };
                index.insert((k.as_str(), exposure));
                nodes.push(Node {
                    interface: interface.to_owned(),
                    exposure,
                    pre_auth: node_pre_auth && pre_auth,
                    chain,
                });
                queue.push_back((nodes.len() - 1, None));
            }
        }
    }
    RootReach {
        root: root.to_owned(),
        nodes,
    }
}

/// What [`TypeWalk`] reports while it walks a type.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'s> {
    /// Any type node, before its inside is walked.
    Ty(&'s Ty),
    /// A named type, found in the schema.
    Named(&'s TypeDef),
    /// A field of a named type (`variant` is set inside an enum).
    Field {
        /// The struct or enum.
        owner: &'s TypeDef,
        /// The enum variant, for an enum.
        variant: Option<&'s str>,
        /// The field.
        field: &'s FieldDef,
    },
    /// A named type that contains itself (reached again while inside it).
    Recursion(&'s TypeDef),
    /// A named type missing from the schema.
    Missing(&'s str),
    /// A capability handle.
    Capability {
        /// Interface key.
        interface: &'s str,
    },
    /// A type nested more than [`MAX_DEPTH`] steps deep: the walk does not
    /// enter it (so a pathological schema cannot overflow the stack), and
    /// the `unchecked-type` rule reports it.
    TooDeep(&'s Ty),
}

/// How many [`Step`]s deep a [`TypeWalk`] goes before it reports
/// [`Event::TooDeep`] instead of entering a type. A named type inside a
/// field costs two steps (`.field`, `Type`).
pub const MAX_DEPTH: usize = 256;

/// The policy key of a field: `app::User.password`, or
/// `app::Event.Joined.name` inside an enum variant.
///
/// ```
/// use remote_policy::graph::field_key;
/// assert_eq!(field_key("app::User", None, "password"), "app::User.password");
/// assert_eq!(field_key("app::Event", Some("Joined"), "0"), "app::Event.Joined.0");
/// ```
pub fn field_key(owner: &str, variant: Option<&str>, field: &str) -> String {
    match variant {
        Some(v) => format!("{owner}.{v}.{field}"),
        None => format!("{owner}.{field}"),
    }
}

/// One step of a [`TypeWalk`] inside a type: a [`Hop`] that borrows from
/// the schema, so walking allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step<'s> {
    /// A named type.
    Type(&'s str),
    /// An enum variant.
    Variant(&'s str),
    /// A field.
    Field(&'s str),
    /// A sequence or array element.
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
    Tuple(usize),
    /// A stream item.
    Item,
}

impl Step<'_> {
    /// The owned hop.
    ///
    /// ```
    /// use remote_policy::graph::{Hop, Step};
    /// assert_eq!(Step::Field("name").hop(), Hop::Field { name: "name".into() });
    /// ```
    pub fn hop(&self) -> Hop {
        match *self {
            Step::Type(path) => Hop::Type {
                path: path.to_owned(),
            },
            Step::Variant(name) => Hop::Variant {
                name: name.to_owned(),
            },
            Step::Field(name) => Hop::Field {
                name: name.to_owned(),
            },
            Step::Element => Hop::Element,
            Step::Key => Hop::Key,
            Step::Value => Hop::Value,
            Step::Some => Hop::Some,
            Step::Ok => Hop::Ok,
            Step::Err => Hop::Err,
            Step::Tuple(index) => Hop::Tuple { index },
            Step::Item => Hop::Item,
        }
    }
}

/// The owned hops of a walk path.
pub fn hops(steps: &[Step<'_>]) -> Vec<Hop> {
    steps.iter().map(Step::hop).collect()
}

/// Depth-first walk of a type's structure through the schema's named types,
/// each named type once per walk.
///
/// The callback gets each [`Event`] and the [`Step`]s from the walk's start;
/// it returns whether to walk inside.
///
/// ```
/// use remote_core::schema::{Schema, Ty};
/// use remote_policy::graph::{Event, Step, TypeWalk};
/// let ty = Ty::Option(Box::new(Ty::Capability { interface: "app::Room".into() }));
/// let schema = Schema::default();
/// let mut seen = Vec::new();
/// TypeWalk::new(&schema).walk(&ty, &mut |e, path| {
///     if let Event::Capability { interface } = e { seen.push((interface.to_owned(), path.to_vec())); }
///     true
/// });
/// assert_eq!(seen, vec![("app::Room".to_owned(), vec![Step::Some])]);
/// ```
#[derive(Debug)]
pub struct TypeWalk<'s> {
    schema: &'s Schema,
    path: Vec<Step<'s>>,
    /// Named types being walked (the depth-first stack), to see recursion.
    open: HashSet<&'s str>,
    seen: HashSet<&'s str>,
}

/// The callback of a [`TypeWalk`].
pub trait Visit<'s>: FnMut(Event<'s>, &[Step<'s>]) -> bool {}
impl<'s, F: FnMut(Event<'s>, &[Step<'s>]) -> bool> Visit<'s> for F {}

impl<'s> TypeWalk<'s> {
    /// A walk over `schema`'s types.
    pub fn new(schema: &'s Schema) -> Self {
        TypeWalk {
            schema,
            path: Vec::new(),
            open: HashSet::new(),
            seen: HashSet::new(),
        }
    }

    /// Walks `ty`.
    pub fn walk(&mut self, ty: &'s Ty, f: &mut impl Visit<'s>) {
        if self.path.len() >= MAX_DEPTH {
            f(Event::TooDeep(ty), &self.path);
            return;
        }
        if !f(Event::Ty(ty), &self.path) {
            return;
        }
        match ty {
            Ty::String { .. }
            | Ty::Bytes { .. }
            | Ty::Unit
            | Ty::Bool
            | Ty::Int { .. }
            | Ty::Float { .. }
            | Ty::Char
            | Ty::RemoteError
            | Ty::Opaque { .. } => {}
            Ty::Seq { elem, .. } | Ty::Array { elem, .. } => self.inside(Step::Element, elem, f),
            Ty::Map { key, value, .. } => {
                self.inside(Step::Key, key, f);
                self.inside(Step::Value, value, f);
            }
            Ty::Option(inner) => self.inside(Step::Some, inner, f),
            Ty::Result { ok, err } => {
                self.inside(Step::Ok, ok, f);
                self.inside(Step::Err, err, f);
            }
            Ty::Tuple(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.inside(Step::Tuple(index), item, f);
                }
            }
            Ty::Stream { item, .. } => self.inside(Step::Item, item, f),
            Ty::Capability { interface } => {
                f(Event::Capability { interface }, &self.path);
            }
            Ty::Named { path } => self.named(path, f),
            // A kind of type this checker does not know yet: the rules see
            // `Event::Ty` and treat it as unchecked.
            _ => {}
        }
    }

    fn inside(&mut self, step: Step<'s>, ty: &'s Ty, f: &mut impl Visit<'s>) {
        self.path.push(step);
        self.walk(ty, f);
        self.path.pop();
    }

    fn named(&mut self, path: &'s str, f: &mut impl Visit<'s>) {
        self.path.push(Step::Type(path));
        match self.schema.types.get(path) {
            None => {
                f(Event::Missing(path), &self.path);
            }
            Some(def) if self.open.contains(path) => {
                f(Event::Recursion(def), &self.path);
            }
            Some(def) => {
                if self.seen.insert(path) && f(Event::Named(def), &self.path) {
                    self.open.insert(path);
                    match &def.kind {
                        TypeKind::Struct { fields } => self.fields(def, None, fields, f),
                        TypeKind::Enum { variants } => {
                            for v in variants {
                                self.path.push(Step::Variant(&v.name));
                                self.fields(def, Some(&v.name), &v.fields, f);
                                self.path.pop();
                            }
                        }
                    }
                    self.open.remove(path);
                }
            }
        }
        self.path.pop();
    }

    fn fields(
        &mut self,
        owner: &'s TypeDef,
        variant: Option<&'s str>,
        fields: &'s [FieldDef],
        f: &mut impl Visit<'s>,
    ) {
        for field in fields {
            self.path.push(Step::Field(&field.name));
            if f(
                Event::Field {
                    owner,
                    variant,
                    field,
                },
                &self.path,
            ) {
                self.walk(&field.ty, f);
            }
            self.path.pop();
        }
    }
}
