//! A Python-served object called from Rust: spawns the Python runtime's
//! test peer (`python/tests/greeter_child.py`) as a child over stdio and
//! calls its `Greeter`, passing a Rust capability it calls back. Skipped
//! (with a message) only when `python3` is not installed; the `msgpack`
//! package must be (`.ci/run` installs it).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use remote_core::{ConnectionBuilder, Error, Remote};
use remote_examples::probe::{GreetError, Greeter, Tally};

struct Counted {
    total: AtomicUsize,
    live: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[remote_core::remote]
impl Tally for Counted {
    async fn add(&self, n: i64) -> Result<i64, Error> {
        Ok((self.total.fetch_add(n as usize, Ordering::SeqCst) + n as usize) as i64)
    }
    async fn name(&self) -> Result<String, Error> {
        Ok("rust".into())
    }
}

fn python() -> Option<&'static str> {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then_some("python3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_served_object_is_called_from_rust() {
    let Some(python) = python() else {
        eprintln!("SKIPPED a_python_served_object_is_called_from_rust: python3 is not installed");
        return;
    };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(repo.join("python/tests/greeter_child.py"));
    let (conn, mut child) = ConnectionBuilder::new()
        .spawn_child(cmd)
        .await
        .expect("the Python peer did not complete the handshake (is msgpack installed?)");
    let greeter = conn.root::<dyn Greeter>();
    let test = async {
        assert_eq!(greeter.greet("ann".into()).await.unwrap(), "hello, ann!");
        assert_eq!(greeter.add(2, 40).await.unwrap(), 42);

        // A typed error raised in Python, rebuilt as the Rust enum.
        assert_eq!(
            greeter.greet("mallory".into()).await,
            Err(GreetError::Refused {
                name: "mallory".into()
            })
        );

        // A Rust object passed to Python, called back, then released.
        let live = Arc::new(AtomicUsize::new(1));
        let tally = Remote::new(Arc::new(Counted {
            total: AtomicUsize::new(10),
            live: live.clone(),
        }) as Arc<dyn Tally>);
        assert_eq!(greeter.use_tally(tally, 5).await.unwrap(), 15);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while live.load(Ordering::SeqCst) != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "Python never released the tally (exports: {})",
                conn.exported_objects()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(conn.exported_objects(), 0);

        // Any other Python exception: a `panic` error with the traceback.
        match greeter.fail().await {
            Err(Error::Remote(r)) => {
                assert_eq!(r.kind, "panic", "{r}");
                assert_eq!(r.type_name, "python:builtins.ZeroDivisionError", "{r}");
                let bt = r.backtrace.as_deref().unwrap_or_default();
                assert!(bt.contains("greeter_child.py"), "{bt}");
                assert!(bt.contains("ZeroDivisionError"), "{bt}");
            }
            other => panic!("expected a remote panic, got {other:?}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("the Python peer did not answer in time");
    conn.close();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the Python peer did not exit after the goodbye")
        .unwrap();
    assert!(status.success(), "{status}");
}
