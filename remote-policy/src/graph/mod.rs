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

pub(crate) mod hop;
pub(crate) mod walk;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use remote_core::schema::{InterfaceDef, MethodDef, Schema, Ty};
use serde::Serialize;

pub use self::hop::{
    chain_to_string, hop_location, position_key, Direction, Exposure, Hop, Names, Position,
};
pub use self::walk::{field_key, hops, Event, Step, TypeWalk, Visit, MAX_DEPTH};
use crate::caps::{capabilities_of, hops_to, part_ty, CapCache, TypeCaps};
use crate::Error;

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
