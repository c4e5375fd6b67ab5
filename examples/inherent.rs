//! Prototyping without a trait, rpyc-style.
//!
//! `Notebook` (in `lib.rs`) is a plain struct with `#[remote]` on its
//! inherent `impl Notebook { .. }` block. The macro turns its `&self`
//! methods into the interface `NotebookRemote` (proxy `NotebookClient`);
//! a method marked `#[remote(skip)]` stays local. Serve it as
//! `Remote<dyn NotebookRemote>` (here on a Unix socket in the temp
//! directory), and call it through the generated trait.

use std::sync::Arc;

use remote_core::{Connection, Remote, Server};
use remote_examples::inherent::{Notebook, NotebookRemote};
use remote_examples::{say, Transcript};

/// The demo: one notebook served, one client.
pub async fn run(out: &Transcript) -> remote_core::Result<()> {
    let notebook = Arc::new(Notebook::default());
    let served = notebook.clone();
    let server = Server::bind(&local_address())
        .await?
        .serve(move |_| -> Remote<dyn NotebookRemote> { Remote::new(served.clone()) });
    say!(out, "server: serving a Notebook on {}", server.local_addr());

    let conn = Connection::connect(server.local_addr()).await?;
    let remote_book = conn.root::<dyn NotebookRemote>();
    remote_book
        .write("todo".into(), "write the examples".into())
        .await?;
    let replaced = remote_book
        .write("todo".into(), "ship the examples".into())
        .await?;
    remote_book
        .write("ideas".into(), "a chat that is just a Vec".into())
        .await?;
    say!(
        out,
        "client: second write of \"todo\" replaced a note: {replaced}"
    );
    say!(out, "client: titles() = {:?}", remote_book.titles().await?);
    say!(
        out,
        "client: read(\"todo\") = {:?}",
        remote_book.read("todo".into()).await?
    );

    // `words` is a plain `fn`: a blocking call, so not on the async runtime.
    let book = remote_book.clone();
    let words = std::thread::spawn(move || book.words())
        .join()
        .expect("no panic")?;
    say!(out, "client: words() from a plain thread = {words}");

    // The server still has the object itself, with its local-only methods.
    say!(
        out,
        "server: locally, titles() = {:?}",
        notebook.titles().await?
    );
    notebook.clear();
    say!(
        out,
        "server: after the local-only clear(), the client sees titles() = {:?}",
        remote_book.titles().await?
    );
    conn.close();
    Ok(())
}

/// A Unix socket in the temp directory where there are Unix sockets.
fn local_address() -> String {
    if cfg!(unix) {
        let path =
            std::env::temp_dir().join(format!("remote-inherent-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        format!("unix://{}", path.display())
    } else {
        "tcp://127.0.0.1:0".into()
    }
}

#[tokio::main]
async fn main() -> remote_core::Result<()> {
    run(&Transcript::stdout()).await
}
