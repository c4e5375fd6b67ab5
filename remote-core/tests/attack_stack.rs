//! Values whose every level holds much inline: `max_depth` counts levels,
//! not stack, and a recursive untagged type with a 16 KiB inline variant
//! overflowed a 2 MiB tokio worker stack at 30 levels, which aborts the
//! process (red-team pass 40). Each `#[derive(Wire)]` type now decodes
//! and encodes a level with a level's worth of stack left at least,
//! going on on a new stack segment if the thread's has not that much: on
//! the server and on the client, such values decode, and the process
//! goes on.

#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;

use remote_core::{
    remote, Connection, ConnectionBuilder, Error, Limits, Remote, Server, ServerHandle,
};

/// 8 KiB inline.
type Pad = [[u64; 32]; 32];

/// A recursive untagged type with a large inline variant: serde keeps
/// several of its values on the stack at each level.
#[derive(Debug, remote_core::Wire)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // the point of the test
pub enum Deep {
    Big { a: Pad, b: Pad },
    List(Vec<Deep>),
}

/// A recursive struct.
#[derive(Debug, remote_core::Wire)]
pub struct Chain {
    pub a: Pad,
    pub b: Pad,
    pub next: Option<Box<Chain>>,
}

/// Left-recursive, with a large variant: serde decodes `Paren` from its
/// own buffer without end, each level's frames holding several values of
/// the enum; a 3-byte call of flat arguments (not weighed) nests until
/// something stops it.
#[derive(Debug, remote_core::Wire)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum LeftBig {
    Lit(i64),
    Big { a: Pad, b: Pad },
    Paren(Box<LeftBig>),
}

/// A small untagged type: serde buffers the whole value (`Content`)
/// before it tries a variant, recursing once per level of the data.
#[derive(Debug, remote_core::Wire)]
#[serde(untagged)]
pub enum Small {
    Num(i64),
    Text(String),
}

/// An untagged enum of many large variants: serde tries each in turn,
/// and a debug build keeps every try's results in the one frame, so a
/// level takes the stack of all the variants, not the largest (red-team
/// pass 41: 32 variants of 8 KiB overflowed at depth 0, 2 bytes).
macro_rules! many {
    ($($v:ident)*) => {
        #[derive(Debug, remote_core::Wire)]
        #[serde(untagged)]
        #[allow(clippy::large_enum_variant)]
        pub enum Many {
            $($v(Pad),)*
            List(Vec<Many>),
        }
    };
}

many!(V0 V1 V2 V3 V4 V5 V6 V7 V8 V9 V10 V11 V12 V13 V14 V15 V16 V17 V18 V19 V20 V21 V22 V23 V24
    V25 V26 V27 V28 V29 V30 V31);

/// An externally tagged enum of many large newtype variants: a debug
/// build's `visit_enum` keeps every variant's result in its one frame
/// (red-team pass 42: 64 variants of 8 KiB, a 7-byte call).
macro_rules! many_tagged {
    ($($v:ident)*) => {
        #[derive(Debug, remote_core::Wire)]
        #[allow(clippy::large_enum_variant)]
        pub enum Tagged {
            $($v(Pad),)*
            List(Vec<Tagged>),
        }
    };
}

many_tagged!(A0 A1 A2 A3 A4 A5 A6 A7 A8 A9 A10 A11 A12 A13 A14 A15 A16 A17 A18 A19 A20 A21 A22
    A23 A24 A25 A26 A27 A28 A29 A30 A31 B0 B1 B2 B3 B4 B5 B6 B7 B8 B9 B10 B11 B12 B13 B14 B15 B16
    B17 B18 B19 B20 B21 B22 B23 B24 B25 B26 B27 B28 B29 B30 B31);

#[remote]
pub trait Nest {
    async fn tagged(&self, v: Tagged) -> Result<u32, Error>;
    async fn many(&self, v: Many) -> Result<u32, Error>;
    async fn small(&self, v: Small, pad: Vec<u8>) -> Result<u32, Error>;
    async fn left(&self, v: LeftBig) -> Result<u32, Error>;
    async fn deep(&self, v: Deep) -> Result<u32, Error>;
    async fn chain(&self, v: Chain) -> Result<u32, Error>;
    async fn chain_of(&self, levels: u32) -> Result<Chain, Error>;
}

struct Impl;

#[remote]
impl Nest for Impl {
    async fn tagged(&self, _: Tagged) -> Result<u32, Error> {
        Ok(4)
    }
    async fn many(&self, _: Many) -> Result<u32, Error> {
        Ok(3)
    }
    async fn small(&self, _: Small, _: Vec<u8>) -> Result<u32, Error> {
        Ok(2)
    }
    async fn left(&self, _: LeftBig) -> Result<u32, Error> {
        Ok(1)
    }
    async fn deep(&self, v: Deep) -> Result<u32, Error> {
        let mut levels = 0;
        let mut at = &v;
        while let Deep::List(l) = at {
            levels += 1;
            match l.first() {
                Some(next) => at = next,
                None => break,
            }
        }
        Ok(levels)
    }
    async fn chain(&self, v: Chain) -> Result<u32, Error> {
        Ok(length(&v))
    }
    async fn chain_of(&self, levels: u32) -> Result<Chain, Error> {
        Ok(chain(levels))
    }
}

fn length(mut c: &Chain) -> u32 {
    let mut n = 1;
    while let Some(next) = &c.next {
        n += 1;
        c = next;
    }
    n
}

fn deep(levels: u32) -> Deep {
    (1..levels).fold(Deep::List(Vec::new()), |v, _| Deep::List(vec![v]))
}

fn chain(levels: u32) -> Chain {
    let link = |next| Chain {
        a: [[7; 32]; 32],
        b: [[7; 32]; 32],
        next,
    };
    (1..levels).fold(link(None), |c, _| link(Some(Box::new(c))))
}

/// A server whose budget has room for the copies serde makes of a deep
/// untagged value's buffer (each level weighs a copy): the stack, not
/// the budget, is what such a value runs out of here.
async fn server() -> ServerHandle {
    server_with(Limits::default().max_depth).await
}

async fn server_with(max_depth: usize) -> ServerHandle {
    Server::builder()
        .limits(Limits {
            memory_budget: 1 << 30,
            max_depth,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Nest>))
}

async fn client(server: &ServerHandle) -> Connection {
    ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap()
}

/// 60 levels of 16 KiB inline (near `max_depth`) decode and encode on
/// tokio's 2 MiB worker stacks: serde took about 350 KiB a level of a
/// debug build's stack, and overflowed, aborting the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_untagged_value_decodes_on_more_stack_not_overflowed() {
    let server = server().await;
    let conn = client(&server).await;
    let api = conn.root::<dyn Nest>();
    // Weighed (a list among the arguments).
    assert_eq!(api.deep(deep(60)).await.unwrap(), 60);
    assert_eq!(api.deep(deep(3)).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_struct_decodes_on_more_stack() {
    let server = server().await;
    let conn = client(&server).await;
    let api = conn.root::<dyn Nest>();
    assert_eq!(api.chain(chain(60)).await.unwrap(), 60);
    assert_eq!(api.chain(chain(3)).await.unwrap(), 3);
}

/// Wherever a value is encoded or decoded: a server encoding a deep reply,
/// and the client decoding it, both on 2 MiB stacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_reply_is_encoded_and_decoded_on_more_stack() {
    let server = server().await;
    let conn = client(&server).await;
    let api = conn.root::<dyn Nest>();
    let reply = api.chain_of(60).await.unwrap();
    assert_eq!(length(&reply), 60);
    assert_eq!(reply.a[31][31], 7);
}

/// Flat arguments are not weighed, and a left-recursive type nests until
/// the cap on buffered decodes (128): with a large variant, the stack ran
/// out first, from a 3-byte call. Now the cap is met, on more stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_left_recursive_type_with_a_large_variant_meets_the_nesting_cap() {
    let server = server().await;
    let mut s = raw::opened(&server).await;
    // ["x"]
    raw::refused(&mut s, 1, "left", &[0x91, 0xa1, b'x'], "bad_arguments", "").await;
    // [7]
    raw::answered(&mut s, 2, "left", &[0x91, 0x07]).await;
}

/// Recursion driven by the data, through no derived type: serde buffers
/// an untagged value whole, a level of its frames per level of the data.
/// With `max_depth` raised to 1,000 (rmp-serde's own cap is 1,024), 900
/// levels ran a debug build's 2 MiB worker stack out. The weighing
/// deserializer, through which a call's nested arguments decode, runs
/// each level with a level's worth of stack left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_nested_deep_in_serdes_buffer_decodes_on_more_stack() {
    let server = server_with(1000).await;
    let mut s = raw::opened(&server).await;
    // [[[...[7]...]], []]: 900 levels under the first argument.
    let mut args = vec![0x92];
    args.extend(std::iter::repeat_n(0x91, 900));
    args.extend_from_slice(&[0x07, 0x90]);
    raw::refused(&mut s, 1, "small", &args, "bad_arguments", "").await;
    // [7, []]
    raw::answered(&mut s, 2, "small", &[0x92, 0x07, 0x90]).await;
}

/// Each level of an untagged enum of many large variants takes the stack
/// of all its variants' tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_enum_of_many_large_variants_decodes_on_more_stack() {
    let server = server().await;
    let mut s = raw::opened(&server).await;
    // Call `depth` + 1: [[[...[]...]]], lists `depth` deep in the one
    // argument.
    for depth in [0, 1, 5, 60] {
        let mut args = vec![0x91];
        args.extend(std::iter::repeat_n(0x91, depth));
        args.push(0x90);
        raw::answered(&mut s, depth as u64 + 1, "many", &args).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_externally_tagged_enum_of_many_large_variants_decodes_on_more_stack() {
    let server = server().await;
    let mut s = raw::opened(&server).await;
    // [{"A0": nil}]: not a `Pad`, refused; it aborted before.
    let args = [0x91, 0x81, 0xa2, b'A', b'0', 0xc0];
    raw::refused(&mut s, 1, "tagged", &args, "bad_arguments", "").await;
    // Call `depth` + 1: [{"List": [{"List": [...[]...]}]}], `depth` lists
    // deep.
    for depth in [1, 20] {
        let mut args = vec![0x91];
        for _ in 0..depth {
            args.extend_from_slice(&[0x81, 0xa4, b'L', b'i', b's', b't', 0x91]);
        }
        args.extend_from_slice(&[0x81, 0xa4, b'L', b'i', b's', b't', 0x90]);
        raw::answered(&mut s, depth + 1, "tagged", &args).await;
    }
}
