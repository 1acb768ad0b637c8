//! The chapter's Lambda handler (§24.3) in Rust: `ruchy-image lambda examples/lambda/hello.rs
//! -o function.zip` wraps `handle_request` in a blocking Runtime API loop and zips it as
//! `bootstrap`. `{"name": "NASA"}` answers `{"body":"Hello, NASA!","statusCode":200}`.

use std::collections::BTreeMap;

fn handle_request(event: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    let name = event.get("name").map_or("World", String::as_str);
    if name.is_empty() {
        return Err("the name is empty".to_string());
    }
    if name == "panic" {
        panic!("asked to panic");
    }
    let mut response = BTreeMap::new();
    response.insert("statusCode".to_string(), 200.to_string());
    response.insert("body".to_string(), format!("Hello, {name}!"));
    Ok(response)
}

fn main() {
    let mut event = BTreeMap::new();
    event.insert("name".to_string(), "Lambda".to_string());
    println!("{:?}", handle_request(event));
}
