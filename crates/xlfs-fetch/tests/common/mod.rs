//! A tiny HTTP/1.1 server on 127.0.0.1 for the integration tests.
//!
//! It serves registered paths, honours `Range: bytes=N-`, and can be told to
//! cut a response off mid-body, answer with a status code, or (by registering
//! other bytes) serve wrong content. Every request is recorded.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Lowercase hex sha256 of `data`.
pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic test content of `len` bytes.
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A header's value (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
enum Route {
    Body {
        body: Arc<Vec<u8>>,
        /// Cut the next `cuts` responses after `cut_after` body bytes.
        cut_after: usize,
        cuts: usize,
    },
    Status(u16),
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    /// Answer the next `n` requests for a path with this status, before its route.
    failures: HashMap<String, (u16, usize)>,
    requests: Vec<Request>,
}

/// The running server; stopped when dropped.
pub struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || handle(stream, &state));
                }
            })
        };
        Server {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Serve `body` at `path`.
    pub fn serve(&self, path: &str, body: &[u8]) {
        self.serve_cut(path, body, 0, 0);
    }

    /// Serve `body` at `path`, but cut the next `cuts` responses off after
    /// `cut_after` bytes of body (headers announce the full length).
    pub fn serve_cut(&self, path: &str, body: &[u8], cut_after: usize, cuts: usize) {
        self.route(
            path,
            Route::Body {
                body: Arc::new(body.to_vec()),
                cut_after,
                cuts,
            },
        );
    }

    /// Answer requests for `path` with status `code` and no body.
    pub fn serve_status(&self, path: &str, code: u16) {
        self.route(path, Route::Status(code));
    }

    /// Answer the next `times` requests for `path` with status `code`, then as routed.
    pub fn fail_next(&self, path: &str, code: u16, times: usize) {
        self.state
            .lock()
            .unwrap()
            .failures
            .insert(path.to_string(), (code, times));
    }

    fn route(&self, path: &str, route: Route) {
        self.state.lock().unwrap().routes.insert(path.to_string(), route);
    }

    /// All requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests for `path` so far.
    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake up the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let request = Request { path, headers };
    let route = {
        let mut st = state.lock().unwrap();
        st.requests.push(request.clone());
        if let Some((code, n)) = st.failures.get_mut(&request.path).filter(|(_, n)| *n > 0) {
            *n -= 1;
            Some(Route::Status(*code))
        } else {
            st.routes.get_mut(&request.path).map(|r| {
                let seen = r.clone();
                if let Route::Body { cuts, .. } = r {
                    *cuts = cuts.saturating_sub(1);
                }
                seen
            })
        }
    };
    let (body, cut_after, cut) = match route {
        None => return respond(&mut stream, 404, "Not Found", &[], b""),
        Some(Route::Status(code)) => {
            let reason = match code {
                404 => "Not Found",
                429 => "Too Many Requests",
                503 => "Service Unavailable",
                _ => "Error",
            };
            return respond(&mut stream, code, reason, &[], b"");
        }
        Some(Route::Body {
            body,
            cut_after,
            cuts,
        }) => (body, cut_after, cuts > 0),
    };
    let len = body.len();
    let start = request
        .header("Range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (code, reason, extra, slice) = match start {
        Some(s) if s >= len => {
            let cr = format!("bytes */{len}");
            return respond(
                &mut stream,
                416,
                "Range Not Satisfiable",
                &[("Content-Range", cr)],
                b"",
            );
        }
        Some(s) => (
            206,
            "Partial Content",
            vec![("Content-Range", format!("bytes {s}-{}/{len}", len - 1))],
            &body[s..],
        ),
        None => (200, "OK", vec![], &body[..]),
    };
    if cut {
        let head = head(code, reason, &extra, slice.len());
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&slice[..cut_after.min(slice.len())]);
        let _ = stream.flush();
        let _ = stream.shutdown(Shutdown::Both);
    } else {
        respond(&mut stream, code, reason, &extra, slice);
    }
}

fn head(code: u16, reason: &str, extra: &[(&str, String)], len: usize) -> String {
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n"
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn respond(stream: &mut TcpStream, code: u16, reason: &str, extra: &[(&str, String)], body: &[u8]) {
    let _ = stream.write_all(head(code, reason, extra, body.len()).as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

/// A URL on 127.0.0.1 where nothing listens (connection refused).
pub fn dead_url(path: &str) -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}{path}")
}
