//! The default roots (a policy without `roots`) are the interfaces of the
//! registered `#[remote] impl`s. A generic impl (`impl<S> Keys for
//! KeyServer<S>`) registered nothing, so the interface it serves was not a
//! root and what it leaked went unreported (a review, pass 46). Its own
//! binary: the roots are this program's registrations.

use remote_policy::{check, Policy, Rule};

pub mod app {
    use remote_core::{remote, Error, Wire};

    #[derive(Debug, Clone, Wire)]
    #[wire(secret)]
    pub struct MasterKey(pub u64);

    #[remote]
    pub trait Status {
        async fn ping(&self) -> Result<u64, Error>;
    }

    #[derive(Debug)]
    pub struct StatusServer;

    #[remote]
    impl Status for StatusServer {
        async fn ping(&self) -> Result<u64, Error> {
            Ok(1)
        }
    }

    /// Served by a server generic over its storage.
    #[remote]
    pub trait Keys {
        async fn master(&self) -> Result<MasterKey, Error>;
    }

    #[derive(Debug)]
    pub struct KeyServer<S>(pub S);

    #[remote]
    impl<S: Send + Sync + 'static> Keys for KeyServer<S> {
        async fn master(&self) -> Result<MasterKey, Error> {
            Ok(MasterKey(7))
        }
    }

    /// A generic trait's generic impl names no one interface: not
    /// registered (and not a compile error).
    #[remote]
    pub trait Store<T: Wire> {
        async fn get(&self) -> Result<T, Error>;
    }

    #[derive(Debug)]
    pub struct Mem<T>(pub T);

    #[remote]
    impl<T: Wire + Clone + Sync> Store<T> for Mem<T> {
        async fn get(&self) -> Result<T, Error> {
            Ok(self.0.clone())
        }
    }
}

#[test]
fn an_interface_served_by_a_generic_impl_is_a_default_root() {
    let schema = remote_core::schema::collect();
    let interfaces: Vec<&str> = schema.impls.iter().map(|i| i.interface.as_str()).collect();
    assert!(
        interfaces.contains(&"generic_impl_roots::app::Keys"),
        "{interfaces:?}"
    );
    let report = check(&schema, &Policy::default()).unwrap();
    assert!(report.failed());
    assert!(report
        .findings
        .iter()
        .any(|f| f.rule == Rule::SecretFlowsOut && f.at.ends_with("::MasterKey")));
}
