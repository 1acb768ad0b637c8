//! A small service of the kind most Rust teams run: an axum server whose handler calls
//! another service over HTTPS with reqwest (rustls, whose crypto is ring: C and assembly).
//!
//!   tls-service --version        prints the version
//!   tls-service [ADDR]           serves GET /health and GET /fetch?url=https://...

use axum::{extract::Query, routing::get, Json, Router};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fetch {
    url: String,
}

async fn fetch(Query(query): Query<Fetch>) -> Json<serde_json::Value> {
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .build()
        .expect("a TLS client");
    let answer = match client.get(&query.url).send().await {
        Ok(response) => serde_json::json!({ "status": response.status().as_u16() }),
        Err(error) => serde_json::json!({ "error": error.to_string() }),
    };
    Json(answer)
}

#[tokio::main]
async fn main() {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("--version") {
        // Building a client proves rustls and its crypto provider are linked and work.
        reqwest::Client::builder()
            .use_rustls_tls()
            .build()
            .expect("a TLS client");
        println!("tls-service {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let addr = arg.unwrap_or_else(|| "0.0.0.0:8080".into());
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/fetch", get(fetch));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
