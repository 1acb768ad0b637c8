//! A repository to push into, named without a tag (`REGISTRY/REPOSITORY`), and whether this
//! user may push there: what `serve --artifacts` checks before it takes a build, and what
//! `doctor --artifacts` reports.

use bytes::Bytes;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use super::registry::{auth_for, client_for, parse_reference, push_error, RegistryOptions};
use crate::core::error::{Error, Result};

/// `text` as a repository: a registry host and a path, no tag or digest.
pub fn parse_repository(text: &str) -> Result<String> {
    let text = text.strip_prefix("docker://").unwrap_or(text);
    let invalid = |reason: &str| Error::InvalidInput {
        what: "artifact repository",
        value: text.to_string(),
        reason: format!("{reason}; expected REGISTRY/REPOSITORY, e.g. 127.0.0.1:5000/builds"),
    };
    let last = text.rsplit('/').next().unwrap_or_default();
    if last.contains(':') || last.contains('@') {
        return Err(invalid("give a repository without a tag or digest"));
    }
    // A registry host is what comes before the first `/` when it has a dot, a port or is
    // localhost: without one, the name would silently mean Docker Hub.
    let host = text.split_once('/').map(|(host, _)| host);
    if !host.is_some_and(|h| h.contains('.') || h.contains(':') || h == "localhost") {
        return Err(invalid("name the registry host"));
    }
    parse_reference(text).map_err(|_| invalid("not a valid repository name"))?;
    Ok(text.trim_end_matches('/').to_string())
}

/// Whether this user can push to `repository`: credentials accepted for a push, and a blob
/// (the empty JSON every SBOM referrer carries) uploaded when it is not there yet.
pub async fn check_push(repository: &str, options: &RegistryOptions) -> Result<()> {
    let reference = parse_reference(repository)?;
    let client = client_for(&reference, options)?;
    let auth = auth_for(&reference, options).await?;
    let user = match &auth {
        RegistryAuth::Basic(user, _) => Some(user.clone()),
        _ => None,
    };
    let fail = push_error(&reference, user);
    client
        .auth(&reference, &auth, RegistryOperation::Push)
        .await
        .map_err(&fail)?;
    let empty = crate::adapters::fsutil::sha256_digest(b"{}");
    if !client
        .blob_exists(&reference, &empty)
        .await
        .map_err(&fail)?
    {
        client
            .push_blob(&reference, Bytes::from_static(b"{}"), &empty)
            .await
            .map_err(&fail)?;
    }
    Ok(())
}
