//! A tiny std-only HTTP server for the compose dev stack.
//!
//! - `GET /` answers a greeting, `GET /health` answers `ok`.
//! - `PORT` sets the port (default 8080); `RUST_LOG=info` logs each request to stderr.
//! - `http-server --health` asks a running server on localhost for `/health` and exits 0 when
//!   it answers: a health check that works in a FROM scratch image with no curl or shell.
//!
//! Its image, as the dev stack runs it (compose/build-images.sh builds it, with `--load`;
//! compose/docker-compose.yml runs it): the project settings `ruchy-image build
//! examples/http-server.rs` reads from this manifest. Flags win over them.
//!
//! ```cargo
//! [package.metadata.ruchy-image]
//! optimize = "aggressive"
//! port = ["8080"]
//! tag = "ruchy-image-example/http-server:dev"
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn port() -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080)
}

fn health_check() -> std::process::ExitCode {
    let ask = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port()))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.starts_with("HTTP/1.1 200"))
    };
    match ask() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("health check failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn respond(mut stream: TcpStream, log: bool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request_line = String::new();
    BufReader::new(&stream).read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/" => ("200 OK", "Hello from ruchy-image!\n".to_string()),
        "/health" => ("200 OK", "ok\n".to_string()),
        _ => ("404 Not Found", format!("no route for {path}\n")),
    };
    if log {
        eprintln!("{} {path} -> {status}", request_line.split(' ').next().unwrap_or("?"));
    }
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--health") {
        return health_check();
    }
    let log = std::env::var("RUST_LOG").is_ok_and(|l| l != "off" && !l.is_empty());
    let listener = match TcpListener::bind(("0.0.0.0", port())) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on port {}: {e}", port());
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("listening on port {}", port());
    for stream in listener.incoming().flatten() {
        if let Err(e) = respond(stream, log) {
            eprintln!("request failed: {e}");
        }
    }
    std::process::ExitCode::SUCCESS
}
