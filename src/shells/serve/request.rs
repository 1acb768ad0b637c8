//! A build request as the service takes it: the library's own [`Request`] as JSON (the
//! `request` query parameter, what `build --server` sends), or the query parameters curl users
//! know (`optimize=aggressive&lto=thin`, as Docker's `POST /build` takes its options),
//! converted into the same type here at the edge. Either way the library's
//! [`Request::check`] judges it, in a local build's words, and then [`admit`] what this
//! service can build.

use std::collections::BTreeMap;
use std::path::Path;

use crate::core::error::{Error, Result};
use crate::core::preset::Preset;
use crate::pipeline::base::BaseRef;
use crate::pipeline::plan::{settings, Request};

/// The query parameters a build takes: `request` alone, or any of the others.
pub const PARAMETERS: &[&str] = &[
    "request",
    "optimize",
    "push",
    "bin",
    "base",
    "tag",
    "target",
    "platform",
    "load_platform",
    "opt_level",
    "lto",
    "codegen_units",
    "strip",
    "panic",
    "target_cpu",
    "static_link",
];

fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The request a build's query parameters make. Nothing is checked here but that each value
/// parses: [`admit`] checks the whole.
pub fn from_query(pairs: &[(String, String)]) -> Result<Request> {
    if let Some((_, json)) = pairs.iter().find(|(key, _)| key == "request") {
        if let Some((other, _)) = pairs.iter().find(|(key, _)| key != "request") {
            return Err(invalid(
                "query parameter",
                other,
                "`request` holds the whole request as JSON; send nothing beside it",
            ));
        }
        return from_json(json);
    }
    let mut request = Request::default();
    request.presets.clear();
    let listed = |value: &str| -> Vec<String> {
        value
            .split(',')
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect()
    };
    for (key, value) in pairs {
        let overrides = &mut request.overrides;
        match key.as_str() {
            "optimize" => {
                for preset in listed(value) {
                    request.presets.push(preset.parse()?);
                }
            }
            "platform" => {
                for platform in listed(value) {
                    request.platforms.push(platform.parse()?);
                }
            }
            "push" => request.outputs.push.push(value.clone()),
            "bin" => request.source.bin = Some(value.clone()),
            "base" => request.bases = vec![value.parse()?],
            "tag" => request.tag = Some(value.parse()?),
            "target" => request.target = Some(value.clone()),
            "load_platform" => request.load_platform = Some(value.parse()?),
            "opt_level" => overrides.opt_level = Some(value.parse()?),
            "lto" => overrides.lto = Some(value.parse()?),
            "strip" => overrides.strip = Some(value.parse()?),
            "panic" => overrides.panic = Some(value.parse()?),
            "target_cpu" => overrides.target_cpu = Some(value.clone()),
            "codegen_units" => {
                let units = value.parse().ok().filter(|n: &u32| *n >= 1);
                overrides.codegen_units = Some(units.ok_or_else(|| {
                    invalid("codegen_units", value, "expected a number of 1 or more")
                })?)
            }
            "static_link" => {
                overrides.static_link = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("static_link", value, "expected true or false")),
                })
            }
            other => {
                return Err(invalid(
                    "query parameter",
                    other,
                    format!("valid: {}", PARAMETERS.join(", ")),
                ))
            }
        }
    }
    if request.presets.is_empty() {
        request.presets.push(Preset::Balanced);
    }
    Ok(request)
}

/// Records what a build's query parameters (or its `request` JSON) say as said by the
/// request (`request`), so that the upload's settings fill in only the rest. A JSON that says
/// where its settings came from (as `build --server` sends it, resolved) is taken as it is.
pub fn record_given(request: &mut Request, pairs: &[(String, String)]) {
    if let Some((_, json)) = pairs.iter().find(|(key, _)| key == "request") {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(json) {
            settings::record_in_json(request, &json);
        }
        return;
    }
    for (key, _) in pairs {
        let name = key.replace('_', "-");
        request.settings.insert(name, "request".into());
    }
}

/// A request from its JSON (a field the type does not have, or a value its parser refuses,
/// is an error that names it).
pub fn from_json(json: &str) -> Result<Request> {
    serde_json::from_str(json).map_err(|e| invalid("request", "JSON", e.to_string()))
}

/// A request as a build row keeps it: its JSON; rows written before requests were kept whole
/// hold the query parameters' form (`{"optimize": ["size"], "lto": "thin"}`), read as then.
pub fn from_stored(json: &str) -> std::result::Result<Request, String> {
    let current = from_json(json);
    let Ok(serde_json::Value::Object(legacy)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        return current.map_err(|e| e.to_string());
    };
    if !legacy.contains_key("optimize") {
        return current.map_err(|e| e.to_string());
    }
    let mut pairs = Vec::new();
    for (key, value) in legacy {
        match value {
            serde_json::Value::String(text) => pairs.push((key, text)),
            serde_json::Value::Array(items) => {
                let items = items.iter().filter_map(|i| i.as_str().map(str::to_string));
                match key.as_str() {
                    "push" => pairs.extend(items.map(|i| (key.clone(), i))),
                    _ => pairs.push((key.clone(), items.collect::<Vec<_>>().join(","))),
                }
            }
            _ => {}
        }
    }
    from_query(&pairs).map_err(|e| e.to_string())
}

/// Checks `request` (its source where this server unpacked it) as the library does, then
/// what this service builds: a base from its
/// engine or a registry (a path would read the server's files), a target its builder has, a
/// CPU rustc knows, an image, not a Lambda zip; and that `source` (`.` for a Cargo project,
/// else the uploaded file's name) makes a valid project and image name.
pub fn admit(request: &Request, source: &str) -> Result<()> {
    request.validate()?;
    if request.source.lambda {
        return Err(invalid(
            "request",
            "lambda",
            "the service builds images; package a Lambda function with `ruchy-image lambda`",
        ));
    }
    for base in &request.bases {
        if !matches!(
            base,
            BaseRef::Scratch | BaseRef::Engine(_) | BaseRef::Registry(_)
        ) {
            return Err(invalid(
                "base",
                &base.to_string(),
                "the service takes scratch, an image in its engine or docker://REF",
            ));
        }
    }
    if let Some(target) = &request.target {
        if !TARGETS.contains(&target.as_str()) {
            return Err(invalid(
                "target",
                target,
                format!("the builder has: {}", TARGETS.join(", ")),
            ));
        }
    }
    if let Some(cpu) = &request.overrides.target_cpu {
        check_cpu(request, cpu)?;
    }
    check_source(request, source)
}

/// The target triples the service's builder has a std and a linker for.
pub const TARGETS: &[&str] = &[
    "x86_64-unknown-linux-musl",
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-musl",
    "aarch64-unknown-linux-gnu",
];

/// The CPUs rustc knows for `triple` (`rustc --print target-cpus`, asked once per triple);
/// none when no rustc answers here.
fn target_cpus(triple: &str) -> Option<Vec<String>> {
    // Process-wide on purpose: a memo of rustc's fixed answers, the same for every caller.
    static KNOWN: std::sync::Mutex<BTreeMap<String, Option<Vec<String>>>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut known = KNOWN.lock().expect("target cpus");
    known
        .entry(triple.to_string())
        .or_insert_with(|| {
            let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
            let out = std::process::Command::new(rustc)
                .args(["--print", "target-cpus", "--target", triple])
                .output()
                .ok()
                .filter(|o| o.status.success())?;
            let text = String::from_utf8_lossy(&out.stdout);
            // "Available CPUs for this target:" then one indented line per CPU.
            let cpus: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with(char::is_whitespace))
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_string)
                .collect();
            (!cpus.is_empty()).then_some(cpus)
        })
        .clone()
}

/// The target triples a build compiles for: the one asked, each platform's, or amd64's.
fn triples(request: &Request) -> Vec<String> {
    if let Some(target) = &request.target {
        return vec![target.clone()];
    }
    match request.platforms.is_empty() {
        true => vec!["x86_64-unknown-linux-musl".into()],
        false => request
            .platforms
            .iter()
            .map(|p| format!("{}-unknown-linux-musl", p.rust_arch()))
            .collect(),
    }
}

/// A target CPU must be one rustc knows for every triple built (`rustc --print
/// target-cpus`); without a rustc here, a plausible name.
fn check_cpu(request: &Request, cpu: &str) -> Result<()> {
    let plausible = (1..=64).contains(&cpu.len())
        && cpu
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !plausible {
        return Err(invalid(
            "target_cpu",
            cpu,
            "expected a CPU name from `rustc --print target-cpus`",
        ));
    }
    for triple in triples(request) {
        if let Some(cpus) = target_cpus(&triple) {
            if !cpus.iter().any(|c| c == cpu) {
                return Err(invalid(
                    "target_cpu",
                    cpu,
                    format!(
                        "not a CPU for {triple}; `rustc --print target-cpus --target {triple}` lists the valid ones (e.g. {})",
                        cpus.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A single file's name must go into the generated Cargo.toml and, without a tag, make a
/// valid image name.
fn check_source(request: &Request, source: &str) -> Result<()> {
    if source == "." {
        return Ok(());
    }
    if source
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(invalid(
            "source file name",
            &format!("{source:?}"),
            "control characters, quotes and backslashes cannot go into a manifest; rename the file",
        ));
    }
    if request.tag.is_none() {
        let bin = request
            .source
            .bin
            .clone()
            .unwrap_or_else(|| crate::pipeline::source::file_bin_name(Path::new(source)));
        for preset in &request.presets {
            let tag = format!("{bin}:{preset}");
            if let Err(e) = tag.parse::<crate::pipeline::oci::ImageRef>() {
                return Err(invalid(
                    "image name",
                    &tag,
                    format!("made from {source:?}, it is not valid ({e}); pass tag=NAME:TAG"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::preset::{Lto, Panic, Strip};

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn admitted(pairs: &[(&str, &str)]) -> Result<Request> {
        let mut request = from_query(&query(pairs))?;
        request.source.path = ".".into();
        admit(&request, ".")?;
        Ok(request)
    }

    /// curl's query parameters and `build --server`'s JSON make the same request.
    #[test]
    fn query_parameters_make_the_request_its_json_makes() {
        let request = admitted(&[
            ("optimize", "aggressive,size"),
            ("lto", "thin"),
            ("strip", "debuginfo"),
            ("panic", "abort"),
            ("static_link", "true"),
            ("platform", "linux/arm64,linux/amd64"),
            ("load_platform", "linux/arm64"),
        ])
        .unwrap();
        assert_eq!(request.presets, [Preset::Aggressive, Preset::Size]);
        assert_eq!(request.overrides.lto, Some(Lto::Thin));
        assert_eq!(request.overrides.strip, Some(Strip::Debuginfo));
        assert_eq!(request.overrides.panic, Some(Panic::Abort));
        assert_eq!(request.platforms.len(), 2);
        let json = serde_json::to_string(&request).unwrap();
        let sent = from_query(&query(&[("request", &json)])).unwrap();
        assert_eq!(serde_json::to_string(&sent).unwrap(), json);
        assert_eq!(sent.overrides, request.overrides);
    }

    #[test]
    fn bad_parameters_are_refused_in_the_local_words() {
        let error = |pairs: &[(&str, &str)]| admitted(pairs).unwrap_err().to_string();
        assert!(
            error(&[("optimize", "fast")]).contains("none, balanced, aggressive, nasa, size"),
            "{}",
            error(&[("optimize", "fast")])
        );
        assert_eq!(
            error(&[("lto", "max")]),
            "invalid lto `max`: valid: off, thin, fat"
        );
        assert!(error(&[("colour", "red")]).starts_with("invalid query parameter `colour`"));
        assert!(
            error(&[("platform", "linux/s390x")]).contains("expected linux/amd64 or linux/arm64")
        );
        assert!(error(&[("platform", "linux/arm64,linux/arm64")]).contains("listed twice"));
        assert!(error(&[("base", "oci:/etc")]).contains("scratch, an image in its engine"));
        assert!(error(&[("request", "{}"), ("lto", "thin")]).contains("send nothing beside it"));
        let unknown = from_json(r#"{"presets":["size"],"colour":"red"}"#).unwrap_err();
        assert!(
            unknown.to_string().contains("unknown field `colour`"),
            "{unknown}"
        );
        let budget = from_json(r#"{"budgets":{"max_binary":"4X"}}"#).unwrap_err();
        assert!(
            budget.to_string().contains("invalid max_binary `4X`"),
            "{budget}"
        );
        // The library's own checks, in its words: the same as a local build's.
        let twice = Request {
            presets: vec![Preset::Size, Preset::Size],
            ..Request::default()
        };
        assert_eq!(
            admit(&twice, ".").unwrap_err().to_string(),
            twice.check().unwrap_err().to_string()
        );
    }

    /// Rows written before requests were kept whole are read as their query parameters.
    #[test]
    fn stored_rows_of_either_form_are_read() {
        let legacy = r#"{"optimize":["aggressive","size"],"lto":"thin","push":["r.example/a:1"]}"#;
        let request = from_stored(legacy).unwrap();
        assert_eq!(request.presets, [Preset::Aggressive, Preset::Size]);
        assert_eq!(request.overrides.lto, Some(Lto::Thin));
        assert_eq!(request.outputs.push, ["r.example/a:1"]);
        let current = serde_json::to_string(&request).unwrap();
        assert_eq!(
            serde_json::to_string(&from_stored(&current).unwrap()).unwrap(),
            current
        );
        assert!(from_stored("{\"presets\": 3}").is_err());
    }
}
