//! Calls on a promise whose call already failed fail at once, with what
//! the peer's kept answer would have failed them with (PROTOCOL.md §3.10):
//! the error's kind, type, message and first causes, no `data`. With the
//! whole error, each such call made its own copy of the error's data: 200
//! calls on a promise that a hostile server failed with 1 MB of `data`,
//! sent once, held 200 MB (found by red-team pass 19). One test in this
//! binary (a counting allocator).

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use raw::{frame, id_of, kind};
use remote_core::proto::{encode, Hello};
use remote_core::{remote, ConnectionBuilder, Error, Remote};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[remote]
pub trait Files {
    async fn open(&self, name: String) -> Result<Remote<dyn File>, Error>;
}

#[remote]
pub trait File {
    async fn read(&self) -> Result<String, Error>;
}

const DATA: usize = 1_000_000;

/// An `application` error reply to call `id`, with `data` bytes of data.
fn error_reply(id: u32, data: usize) -> Vec<u8> {
    let mut b = encode::begin(data + 64);
    b.extend_from_slice(&[0x93, 0x03, 0xce]);
    b.extend_from_slice(&id.to_be_bytes());
    b.push(0x96);
    for s in ["application", "x::E", "failed"] {
        b.push(0xa0 | s.len() as u8);
        b.extend_from_slice(s.as_bytes());
    }
    b.extend_from_slice(&[0x91, 0xa5]);
    b.extend_from_slice(b"cause");
    b.extend_from_slice(&[0xc0, 0xc6]);
    b.extend_from_slice(&(data as u32).to_be_bytes());
    b.resize(b.len() + data, 0x55);
    encode::finish(&mut b);
    b
}

#[test]
fn calls_on_a_failed_promise_get_its_error_without_its_data() {
    counting::measured(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("tcp://{}", listener.local_addr().unwrap());
        // A server that fails the kept `open` (kind 12) with 1 MB of data.
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let hello = Hello {
                min_version: 1,
                max_version: 1,
                features: vec!["pipeline"],
                auth: None,
            };
            s.write_all(&encode::hello(&hello)).await.unwrap();
            let mut opens = 0;
            while let Some(f) = frame(&mut s).await {
                if kind(&f) == 12 {
                    opens += 1;
                    let id = id_of(&f) as u32;
                    s.write_all(&error_reply(id, DATA)).await.unwrap();
                }
            }
            opens
        });
        let conn = ConnectionBuilder::new().connect(&addr).await.unwrap();
        let api = conn.root::<dyn Files>();
        let promise = FilesPipeline::open_pipelined(&api, "x".into());
        match promise.resolved().await {
            Err(Error::Remote(e)) => {
                // The value as encoded: a bin 32 of DATA bytes.
                assert_eq!(e.data.as_ref().map(Vec::len), Some(5 + DATA));
            }
            other => panic!("the promise's own call: {:?}", other.err()),
        }
        let base = counting::live();
        let held: Vec<_> = futures_util::future::join_all((0..200).map(|_| promise.read())).await;
        let grown = counting::live() - base;
        for r in &held {
            match r {
                Err(Error::Remote(e)) => {
                    assert_eq!(
                        (e.kind.as_str(), e.message.as_str()),
                        ("application", "failed")
                    );
                    assert_eq!(e.chain, ["cause"]);
                    assert!(e.data.is_none(), "a call on the promise got its data");
                }
                other => panic!("a call on the failed promise: {:?}", other.as_ref().err()),
            }
        }
        assert!(grown < 1 << 20, "200 failed calls hold {grown} bytes");
        drop((held, promise, api));
        conn.close();
        let opens = tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("the server did not see the connection close")
            .unwrap();
        assert_eq!(opens, 1, "the calls on the promise were sent");
    });
}
