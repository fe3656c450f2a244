//! The one way tests start an HTTP server: an axum router on 127.0.0.1 with a free port.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running server; dropping it stops the server.
pub struct TestServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestServer {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on a free loopback port until the returned handle is dropped.
pub async fn serve(router: axum::Router) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port for the test server");
    serve_on(listener, router)
}

/// Like [`serve`], with `TCP_NODELAY` on accepted connections: for benchmark receivers whose
/// larger answers would otherwise wait on Nagle and delayed ACKs (~40 ms per request).
pub async fn serve_nodelay(router: axum::Router) -> TestServer {
    use axum::serve::ListenerExt;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port for the test server");
    let addr = listener.local_addr().expect("listener address");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    TestServer { addr, task }
}

/// Serves on an already bound listener (to restart a server on the same port).
pub fn serve_on(listener: TcpListener, router: axum::Router) -> TestServer {
    let addr = listener.local_addr().expect("listener address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    TestServer { addr, task }
}

/// Decompresses a request body according to its `Content-Encoding` (`gzip` or none). Returns
/// `Err(encoding)` for anything else, which real services answer with 415.
pub fn decode_body(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<Vec<u8>, String> {
    match headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        None | Some("identity") => Ok(body.to_vec()),
        Some("gzip") => {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| format!("bad gzip: {e}"))?;
            Ok(out)
        }
        Some(other) => Err(other.to_string()),
    }
}
