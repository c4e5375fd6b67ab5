//! [`Rule`]: the checker's rules, by id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A rule of the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A secret type or field flows out to a peer.
    SecretFlowsOut,
    /// A capability that must never be reachable is reachable.
    ForbiddenCapability,
    /// A capability is reachable without passing a `requires_auth` method.
    UnauthenticatedCapability,
    /// A value a peer sends has no size bound.
    UnboundedInput,
    /// A type the checker cannot see inside.
    UncheckedType,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: [Rule; 5] = [
        Rule::SecretFlowsOut,
        Rule::ForbiddenCapability,
        Rule::UnauthenticatedCapability,
        Rule::UnboundedInput,
        Rule::UncheckedType,
    ];

    /// The id used in policy files and reports.
    pub fn id(self) -> &'static str {
        match self {
            Rule::SecretFlowsOut => "secret-flows-out",
            Rule::ForbiddenCapability => "forbidden-capability",
            Rule::UnauthenticatedCapability => "unauthenticated-capability",
            Rule::UnboundedInput => "unbounded-input",
            Rule::UncheckedType => "unchecked-type",
        }
    }

    /// One-line description.
    ///
    /// ```
    /// assert!(remote_policy::Rule::SecretFlowsOut.summary().contains("secret"));
    /// ```
    pub fn summary(self) -> &'static str {
        match self {
            Rule::SecretFlowsOut => "A secret type or field can be sent to a peer",
            Rule::ForbiddenCapability => "A capability that must never be reachable is reachable",
            Rule::UnauthenticatedCapability => {
                "A capability is reachable without passing a method that requires authentication"
            }
            Rule::UnboundedInput => "A value a peer sends has no size bound (resource exhaustion)",
            Rule::UncheckedType => {
                "A type crosses the connection that the checker cannot see inside"
            }
        }
    }

    /// How to fix or accept a finding.
    pub fn help(self) -> &'static str {
        match self {
            Rule::SecretFlowsOut => {
                "Do not return or send the secret: return a redacted type, or move the value \
                 behind a capability that only exposes what the peer needs. If the flow is \
                 intended, add an [[allow]] entry with a reason."
            }
            Rule::ForbiddenCapability => {
                "Remove the method that hands the capability out (see the chain), or change \
                 the [[capability]] entry."
            }
            Rule::UnauthenticatedCapability => {
                "Mark the method that hands the capability out #[remote(requires_auth)], or \
                 hand it out only from an interface reached through such a method."
            }
            Rule::UnboundedInput => {
                "Use remote_core::wire::Bounded<T, N> for the value, declare a [[bound]] in \
                 the policy if your code enforces one, or require authentication first."
            }
            Rule::UncheckedType => {
                "Derive Wire (or implement Wire::describe) for the type so the checker can \
                 see its fields, or add an [[allow]] entry saying why it is safe."
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The error of parsing a [`Rule`] id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule `{0}`")]
pub struct UnknownRule(pub String);

impl FromStr for Rule {
    type Err = UnknownRule;
    fn from_str(s: &str) -> Result<Rule, UnknownRule> {
        Rule::ALL
            .into_iter()
            .find(|r| r.id() == s)
            .ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rule, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
