//! The registry's HTTP API where oci-client has no call: reading a manifest that may be gone
//! (retention tells a 404 from a failure) and deleting manifests and blobs by digest. TLS,
//! plain HTTP and credentials as the library's registry publisher has them: plain HTTP for
//! loopback (unless a CA is given) and the hosts named insecure, the given CAs trusted, the
//! given user or Docker's; anonymous, HTTP basic, or a Bearer token fetched from the realm a
//! 401's `WWW-Authenticate` names, for the scope the call needs.

use std::collections::HashMap;

use oci_client::secrets::RegistryAuth;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::core::error::{Error, Result};
use crate::pipeline::publish::RegistryOptions;

/// What a manifest may be: an image, an index, a referrer (an image with an artifact type).
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// One registry, spoken to over HTTP.
pub struct RegistryHttp {
    http: reqwest::Client,
    /// `http(s)://host[:port]`.
    base: String,
    /// `host[:port]`, for messages.
    host: String,
    auth: RegistryAuth,
    /// The `Authorization` that worked, per scope.
    granted: tokio::sync::Mutex<HashMap<String, String>>,
}

/// A manifest as read: its digest (of its bytes) and its JSON.
pub struct Manifest {
    /// `sha256:…` of the bytes the registry sent.
    pub digest: String,
    /// Its JSON.
    pub json: serde_json::Value,
}

impl RegistryHttp {
    /// A client for the registry `host` (`host[:port]`), with `auth` (the given user, or
    /// Docker's for the host).
    pub fn new(host: &str, options: &RegistryOptions, auth: RegistryAuth) -> Result<RegistryHttp> {
        let plain = options.insecure.iter().any(|h| h == host)
            || (is_loopback(host) && options.ca_files.is_empty());
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        for file in &options.ca_files {
            let pem = std::fs::read(file).map_err(Error::io(format!(
                "reading the CA certificate {}",
                file.display()
            )))?;
            let certificate =
                reqwest::Certificate::from_pem(&pem).map_err(|e| Error::Registry {
                    registry: host.to_string(),
                    message: format!("the CA certificate {} does not read: {e}", file.display()),
                })?;
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder.build().map_err(|e| Error::Registry {
            registry: host.to_string(),
            message: format!("cannot make an HTTP client: {e}"),
        })?;
        let scheme = if plain { "http" } else { "https" };
        Ok(RegistryHttp {
            http,
            base: format!("{scheme}://{host}"),
            host: host.to_string(),
            auth,
            granted: Default::default(),
        })
    }

    fn error(&self, message: String) -> Error {
        Error::Registry {
            registry: self.host.clone(),
            message,
        }
    }

    /// The manifest `reference` (a digest or a tag) of `repository`; none when the registry
    /// does not have it.
    pub async fn manifest(&self, repository: &str, reference: &str) -> Result<Option<Manifest>> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self.send(Method::GET, &path, repository, &["pull"]).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| self.error(format!("reading {path}: {e}")))?;
                let json = serde_json::from_slice(&bytes)
                    .map_err(|e| self.error(format!("{path} is not a JSON manifest: {e}")))?;
                let digest = format!(
                    "sha256:{}",
                    crate::adapters::fsutil::hex(&Sha256::digest(&bytes))
                );
                Ok(Some(Manifest { digest, json }))
            }
            status => Err(self.refused("reading", &path, status, response).await),
        }
    }

    /// Deletes a manifest (`kind` "manifests") or a blob ("blobs") of `repository` by
    /// digest; false when it was not there.
    pub async fn delete(&self, repository: &str, kind: &str, digest: &str) -> Result<bool> {
        let path = format!("/v2/{repository}/{kind}/{digest}");
        // Distribution asks for `delete`; registries that know no such action grant `*`.
        let response = self
            .send(Method::DELETE, &path, repository, &["delete", "*"])
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            status if status.is_success() => Ok(true),
            StatusCode::METHOD_NOT_ALLOWED => Err(self.error(format!(
                "it does not allow deleting {path} (405); a distribution registry needs `storage: delete: enabled: true` in its config"
            ))),
            status => Err(self.refused("deleting", &path, status, response).await),
        }
    }

    async fn refused(
        &self,
        doing: &str,
        path: &str,
        status: StatusCode,
        response: reqwest::Response,
    ) -> Error {
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return self.error(match &self.auth {
                RegistryAuth::Basic(user, _) => {
                    format!("{doing} {path}: {status} as {user}: that user may not do it")
                }
                _ => format!(
                    "{doing} {path}: {status}: log in (docker login {}) as a user who may",
                    self.host
                ),
            });
        }
        let body = response.text().await.unwrap_or_default();
        self.error(format!("{doing} {path}: {status} {}", body.trim()))
    }

    /// Sends `method path`: with what was granted for the scope before, else as is; on a 401,
    /// with the credentials the challenge asks for (a token for each of `actions` in turn,
    /// until one is not refused).
    async fn send(
        &self,
        method: Method,
        path: &str,
        repository: &str,
        actions: &[&str],
    ) -> Result<reqwest::Response> {
        let key = format!("{repository}:{}", actions[0]);
        let known = self.granted.lock().await.get(&key).cloned();
        let first = match (&known, &self.auth) {
            (Some(header), _) => Some(header.clone()),
            // A registry token (a credential helper's `<token>`) is used as it is, as
            // oci-client does.
            (None, RegistryAuth::Bearer(token)) => Some(format!("Bearer {token}")),
            _ => None,
        };
        let response = self.once(method.clone(), path, first.as_deref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED || known.is_some() {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(Challenge::parse);
        let (mut response, mut sent, mut failed) = (response, false, None);
        for action in actions {
            let header = match (&challenge, &self.auth) {
                (Some(Challenge::Basic), RegistryAuth::Basic(user, password)) if !sent => {
                    basic(user, password)
                }
                (Some(Challenge::Bearer { realm, service }), _) => {
                    let scope = format!("repository:{repository}:{action}");
                    match self.token(realm, service.as_deref(), &scope).await {
                        Ok(token) => format!("Bearer {token}"),
                        Err(e) => {
                            failed = Some(e);
                            continue;
                        }
                    }
                }
                _ => break,
            };
            response = self.once(method.clone(), path, Some(&header)).await?;
            sent = true;
            if !matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) {
                self.granted.lock().await.insert(key, header);
                break;
            }
        }
        match failed {
            // No token at all: the realm's refusal says more than the registry's 401.
            Some(e) if !sent => Err(e),
            _ => Ok(response),
        }
    }

    async fn once(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, ACCEPT);
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        request
            .send()
            .await
            .map_err(|e| self.error(format!("{path}: {}", crate::core::error::causes(&e))))
    }

    /// A token for `scope` from the challenge's realm, with the user's credentials if any.
    async fn token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String> {
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.http.get(realm).query(&query);
        if let RegistryAuth::Basic(user, password) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let fail =
            |why: String| self.error(format!("getting a token for {scope} from {realm}: {why}"));
        let response = request
            .send()
            .await
            .map_err(|e| fail(crate::core::error::causes(&e)))?;
        if !response.status().is_success() {
            return Err(fail(format!("{}", response.status())));
        }
        let answer: serde_json::Value = response
            .json()
            .await
            .map_err(|e| fail(format!("the answer is not JSON: {e}")))?;
        answer["token"]
            .as_str()
            .or_else(|| answer["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| fail("the answer has no token".into()))
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Whether `registry` (`host[:port]`) is this machine, as the library's publisher decides it.
fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What a 401 asks for.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Challenge {
    /// `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
    fn parse(header: &str) -> Challenge {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Challenge::Basic;
        }
        let mut params = HashMap::new();
        let mut rest = rest.trim();
        while let Some((key, after)) = rest.split_once('=') {
            let after = after.trim_start();
            let (value, next) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"').unwrap_or(quoted.len());
                    (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
                }
                None => after.split_once(',').unwrap_or((after, "")),
            };
            params.insert(key.trim().to_ascii_lowercase(), value.to_string());
            rest = next.trim_start_matches([',', ' ']);
        }
        Challenge::Bearer {
            realm: params.remove("realm").unwrap_or_default(),
            service: params.remove("service"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_read_as_registries_send_them() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            }
        );
        assert_eq!(
            Challenge::parse("bearer realm=https://ghcr.io/token"),
            Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: None,
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="ruchy-image-test""#),
            Challenge::Basic
        );
    }

    #[test]
    fn loopback_speaks_plain_http_unless_a_ca_is_given() {
        let plain = RegistryHttp::new(
            "127.0.0.1:5000",
            &RegistryOptions::default(),
            RegistryAuth::Anonymous,
        )
        .unwrap();
        assert_eq!(plain.base, "http://127.0.0.1:5000");
        let remote = RegistryHttp::new(
            "registry.example",
            &RegistryOptions::default(),
            RegistryAuth::Anonymous,
        )
        .unwrap();
        assert_eq!(remote.base, "https://registry.example");
        let insecure = RegistryOptions {
            insecure: vec!["registry.example".into()],
            ..Default::default()
        };
        let named =
            RegistryHttp::new("registry.example", &insecure, RegistryAuth::Anonymous).unwrap();
        assert_eq!(named.base, "http://registry.example");
    }
}
