//! Registry credentials the way Docker finds them: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`), its `credHelpers` for the host, else its `credsStore`, else its
//! `auths` entry (`auth`: base64 `user:password`). No entry is anonymous access. Passwords are
//! only ever held in memory.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

use crate::core::error::{Error, Result};

/// The credentials for `registry` (`host[:port]`).
pub fn for_registry(registry: &str) -> Result<RegistryAuth> {
    let Some(file) = docker_config_file() else {
        return Ok(RegistryAuth::Anonymous);
    };
    let Ok(text) = std::fs::read(&file) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::InvalidInput {
            what: "Docker config",
            value: file.display().to_string(),
            reason: format!("it is not valid JSON: {e}"),
        })?;
    let helper = config["credHelpers"][registry]
        .as_str()
        .or_else(|| config["credsStore"].as_str());
    if let Some(helper) = helper {
        return from_helper(helper, registry);
    }
    let entry = config["auths"]
        .as_object()
        .and_then(|auths| {
            auths.iter().find(|(key, _)| {
                let key = key
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                key.split('/').next() == Some(registry)
            })
        })
        .map(|(_, entry)| entry);
    let Some(encoded) = entry.and_then(|e| e["auth"].as_str()) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|d| {
            d.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        })
        .ok_or_else(|| Error::InvalidInput {
            what: "Docker config",
            value: file.display().to_string(),
            reason: format!("the auth entry for {registry} is not base64 user:password"),
        })?;
    Ok(RegistryAuth::Basic(decoded.0, decoded.1))
}

/// Docker's `config.json`: in `$DOCKER_CONFIG`, else `~/.docker`.
pub fn docker_config_file() -> Option<std::path::PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".docker")))
        .map(|dir| dir.join("config.json"))
}

/// `docker-credential-HELPER get`, with the host on stdin.
fn from_helper(helper: &str, registry: &str) -> Result<RegistryAuth> {
    let program = format!("docker-credential-{helper}");
    let spawn_error = |source| Error::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_error)?;
    if !out.status.success() {
        // Helpers say "credentials not found" for a host they do not know: anonymous.
        return Ok(RegistryAuth::Anonymous);
    }
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    match (answer["Username"].as_str(), answer["Secret"].as_str()) {
        (Some("<token>"), Some(token)) => Ok(RegistryAuth::Bearer(token.to_string())),
        (Some(user), Some(secret)) => Ok(RegistryAuth::Basic(user.to_string(), secret.to_string())),
        _ => Ok(RegistryAuth::Anonymous),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auths_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths": {{"https://127.0.0.1:5000": {{"auth": "{auth}"}}}}}}"#),
        )
        .unwrap();
        // SAFETY: tests in this module are the only ones touching DOCKER_CONFIG.
        unsafe { std::env::set_var("DOCKER_CONFIG", dir.path()) };
        let found = for_registry("127.0.0.1:5000").unwrap();
        let other = for_registry("127.0.0.1:5001").unwrap();
        unsafe { std::env::remove_var("DOCKER_CONFIG") };
        assert!(matches!(found, RegistryAuth::Basic(u, p) if u == "alice" && p == "s3cret"));
        assert!(matches!(other, RegistryAuth::Anonymous));
    }
}
