//! Expansion tests that need no compiler: what the generated tokens name.
//! Behaviour is tested in the workspace's `tests` crate (hygiene, ui).

use proc_macro2::TokenStream;
use quote::quote;

fn expand(args: TokenStream, item: TokenStream) -> String {
    crate::expand::entry(args, item).to_string()
}

#[test]
fn renamed_crate_leaves_no_default_path() {
    let out = expand(
        quote!(crate = "::rc"),
        quote! {
            pub trait Chat {
                async fn post(&self, text: String) -> Result<u64, Error>;
                fn count(&self) -> Result<u64, Error>;
            }
        },
    );
    assert!(!out.contains("remote_core"), "{out}");
    assert!(out.contains(":: rc :: __private :: Handle"), "{out}");

    let input: syn::DeriveInput = syn::parse_quote! {
        #[wire(crate = "::rc")]
        pub enum E { A(u8), B { x: String } }
    };
    let out = crate::wire::derive(input).to_string();
    assert!(!out.contains("remote_core"), "{out}");
    assert!(out.contains("\"::rc::__private::serde\""), "{out}");
}

#[test]
fn generated_names() {
    let out = expand(
        quote!(),
        quote! {
            pub trait Chat {
                async fn post(&self, text: String) -> Result<u64, Error>;
            }
        },
    );
    for name in [
        "pub struct ChatClient",
        "struct __ChatDispatch",
        "fn __remote_handle",
    ] {
        assert!(out.contains(name), "{name} missing from {out}");
    }
    assert!(out.contains("inventory :: submit"), "{out}");
    // No `async fn` is left in the trait: it must stay dyn-compatible.
    assert!(!out.contains("async fn"), "{out}");

    let out = expand(
        quote!(),
        quote! {
            impl Room {
                pub async fn say(&self, line: String) -> Result<usize, Error> { Ok(1) }
            }
        },
    );
    for name in [
        "pub trait RoomRemote",
        "pub struct RoomClient",
        "impl RoomRemote for Room",
    ] {
        assert!(out.contains(name), "{name} missing from {out}");
    }
}

#[test]
fn all_mistakes_reported_and_trait_kept() {
    let out = expand(
        quote!(),
        quote! {
            pub trait Account {
                #[remote(name = "x")]
                async fn deposit(&mut self, amount: u64) -> Result<u64, Error>;
                async fn owner(&self) -> String;
                async fn rename(&self, name: &str) -> Result<(), Error>;
            }
        },
    );
    assert_eq!(out.matches("compile_error").count(), 3, "{out}");
    assert!(out.contains("pub trait Account"), "{out}");
    // Our attributes are removed from the re-emitted trait.
    assert!(!out.contains("# [remote"), "{out}");
    assert!(!out.contains("AccountClient"), "{out}");
}

#[test]
fn duplicate_wire_names_are_refused() {
    let out = expand(
        quote!(),
        quote! {
            pub trait T {
                async fn a(&self) -> Result<(), Error>;
                #[remote(name = "a")]
                async fn b(&self) -> Result<(), Error>;
            }
        },
    );
    assert!(out.contains("two methods have the wire name"), "{out}");
}

#[test]
fn priority_generates_method_priority_only_when_used() {
    let out = expand(
        quote!(),
        quote! {
            pub trait Jobs {
                #[remote(priority = high)]
                async fn health(&self) -> Result<bool, Error>;
                #[remote(priority = low, name = "bulk_export")]
                async fn export(&self) -> Result<u64, Error>;
                async fn plain(&self) -> Result<u64, Error>;
            }
        },
    );
    assert!(out.contains("fn method_priority"), "{out}");
    assert!(
        out.contains("\"health\" => :: remote_core :: __private :: Some (:: remote_core :: __private :: Priority :: High)"),
        "{out}"
    );
    assert!(
        out.contains("\"bulk_export\" => :: remote_core :: __private :: Some (:: remote_core :: __private :: Priority :: Low)"),
        "{out}"
    );
    // `plain` has a dispatch arm only: it keeps the connection's class.
    assert_eq!(out.matches("\"plain\" =>").count(), 1, "{out}");

    let out = expand(
        quote!(),
        quote! {
            pub trait Plain {
                async fn a(&self) -> Result<u64, Error>;
            }
        },
    );
    assert!(!out.contains("method_priority"), "{out}");

    let out = expand(
        quote!(),
        quote! {
            pub trait Bad {
                #[remote(priority = urgent)]
                async fn a(&self) -> Result<u64, Error>;
            }
        },
    );
    assert!(
        out.contains("unknown priority `urgent`; write `high`, `normal` or `low`"),
        "{out}"
    );
}
