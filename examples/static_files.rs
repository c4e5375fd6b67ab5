//! A small static file server for the chat page (`chat server ADDR --web
//! DIR`): serves the files of one directory over HTTP on loopback, on its
//! own thread, until dropped. Paths that leave the directory are refused.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// A running file server; stops when dropped.
pub struct StaticFiles {
    server: Arc<tiny_http::Server>,
    addr: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StaticFiles {
    /// Serves `dir` on `addr` (`127.0.0.1:0` for any free port).
    pub fn serve(dir: impl Into<PathBuf>, addr: &str) -> std::io::Result<StaticFiles> {
        let dir = dir.into();
        if !dir.join("index.html").is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} has no index.html (build the page with examples/chat-web/build.sh)",
                    dir.display()
                ),
            ));
        }
        let server = Arc::new(tiny_http::Server::http(addr).map_err(std::io::Error::other)?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("not an IP address"))?;
        let s = server.clone();
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let _ = answer(&dir, req);
            }
        });
        Ok(StaticFiles {
            server,
            addr,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl std::fmt::Debug for StaticFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticFiles")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for StaticFiles {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The file for a request path inside `dir`: `/` is `index.html`; a query
/// string is ignored; `..` and absolute components are refused.
fn file_for(dir: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let rel = Path::new(rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(dir.join(rel))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        // Needed by WebAssembly.instantiateStreaming.
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    }
}

fn answer(dir: &Path, req: tiny_http::Request) -> std::io::Result<()> {
    let file = file_for(dir, req.url()).and_then(|p| Some((std::fs::File::open(&p).ok()?, p)));
    match file {
        Some((f, path)) if path.is_file() => {
            let header = tiny_http::Header::from_bytes("Content-Type", content_type(&path))
                .expect("a valid header");
            req.respond(tiny_http::Response::from_file(f).with_header(header))
        }
        _ => req.respond(tiny_http::Response::from_string("not found").with_status_code(404)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_directory() {
        let dir = Path::new("/srv/page");
        assert_eq!(file_for(dir, "/"), Some(dir.join("index.html")));
        assert_eq!(
            file_for(dir, "/?ws=ws://x:1/"),
            Some(dir.join("index.html"))
        );
        assert_eq!(file_for(dir, "/pkg/a.js"), Some(dir.join("pkg/a.js")));
        assert_eq!(file_for(dir, "/../etc/passwd"), None);
        assert_eq!(file_for(dir, "/pkg/../../x"), None);
        assert_eq!(file_for(dir, "//etc/passwd"), Some(dir.join("etc/passwd")));
    }
}
