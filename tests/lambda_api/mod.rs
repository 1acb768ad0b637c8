//! A Lambda Runtime API emulator on loopback, following the documented protocol
//! (`/2018-06-01/runtime/invocation/next`, `…/{id}/response`, `…/{id}/error`, `…/init/error`,
//! with the `Lambda-Runtime-*` headers), for running a `bootstrap` without AWS. It hands out
//! the queued events one per `/next`, records what comes back, and holds the last `/next`
//! open (as Lambda does while no event waits) until dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The chapter's event, and what the hello handler answers to it.
pub const NASA_EVENT: &str = r#"{"name": "NASA"}"#;
pub const NASA_ANSWER: &str = r#"{"body":"Hello, NASA!","statusCode":200}"#;

/// What the bootstrap sent back for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST …/{id}/response`.
    Response(String),
    /// `POST …/{id}/error` (or `…/init/error`): the error type header and the document.
    Error { kind: String, document: String },
}

/// A running emulator: where it listens, and what the bootstrap sent back.
pub struct Emulator {
    /// `host:port`, for `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    results: mpsc::Receiver<(String, Outcome)>,
    first_next: mpsc::Receiver<Instant>,
}

impl Emulator {
    /// Starts serving `events` (JSON documents), request IDs `req-0`, `req-1`, …
    pub fn start(events: Vec<String>) -> Emulator {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (results_tx, results) = mpsc::channel();
        let (first_tx, first_next) = mpsc::channel();
        std::thread::spawn(move || {
            let mut events = events.into_iter().enumerate();
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let Some((method, path, headers, body)) = read_request(&mut stream) else {
                    continue;
                };
                match (method.as_str(), path.as_str()) {
                    ("GET", "/2018-06-01/runtime/invocation/next") => {
                        let _ = first_tx.send(Instant::now());
                        match events.next() {
                            Some((i, event)) => {
                                let deadline = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .unwrap()
                                    .as_millis()
                                    + 3000;
                                let headers = [
                                    ("Lambda-Runtime-Aws-Request-Id", format!("req-{i}")),
                                    ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                                    (
                                        "Lambda-Runtime-Invoked-Function-Arn",
                                        "arn:aws:lambda:us-east-1:123456789012:function:test"
                                            .to_string(),
                                    ),
                                    ("Lambda-Runtime-Trace-Id", format!("Root=1-{i}")),
                                    ("Content-Type", "application/json".to_string()),
                                ];
                                respond(&mut stream, 200, &headers, &event);
                            }
                            // No event waits: Lambda holds the request; so do we.
                            None => held.push(stream),
                        }
                    }
                    ("POST", path) => {
                        let parts: Vec<&str> = path.split('/').collect();
                        let outcome = match parts.as_slice() {
                            ["", "2018-06-01", "runtime", "invocation", id, "response"] => {
                                Some((id.to_string(), Outcome::Response(body)))
                            }
                            ["", "2018-06-01", "runtime", "invocation", id, "error"] => {
                                Some((id.to_string(), error(&headers, body)))
                            }
                            ["", "2018-06-01", "runtime", "init", "error"] => {
                                Some(("init".to_string(), error(&headers, body)))
                            }
                            _ => None,
                        };
                        match outcome {
                            Some(outcome) => {
                                respond(&mut stream, 202, &[], "{\"status\":\"OK\"}");
                                let _ = results_tx.send(outcome);
                            }
                            None => respond(&mut stream, 404, &[], "{}"),
                        }
                    }
                    _ => respond(&mut stream, 404, &[], "{}"),
                }
            }
        });
        Emulator {
            address,
            results,
            first_next,
        }
    }

    /// The next result sent back (request ID, outcome), waiting up to `timeout`.
    pub fn result(&self, timeout: Duration) -> (String, Outcome) {
        self.results
            .recv_timeout(timeout)
            .expect("the bootstrap sent no result in time")
    }

    /// When the first `/next` arrived.
    pub fn first_next(&self, timeout: Duration) -> Instant {
        self.first_next
            .recv_timeout(timeout)
            .expect("the bootstrap asked for no invocation in time")
    }
}

fn error(headers: &[(String, String)], document: String) -> Outcome {
    let kind = headers
        .iter()
        .find(|(n, _)| n == "lambda-runtime-function-error-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Outcome::Error { kind, document }
}

type Request = (String, String, Vec<(String, String)>, String);

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim_end().is_empty() {
            break;
        }
        let (name, value) = line.trim_end().split_once(':')?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
        if name == "content-length" {
            length = value.parse().ok()?;
        }
        headers.push((name, value));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, headers, String::from_utf8(body).ok()?))
}

fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &str) {
    let mut answer = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        answer += &format!("{name}: {value}\r\n");
    }
    answer += "\r\n";
    answer += body;
    let _ = stream.write_all(answer.as_bytes());
}
