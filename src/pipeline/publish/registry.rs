//! Pushing to a registry without a daemon, as ko and Jib do, through `oci-client`: staging
//! uploads the blobs the registry does not have yet (a HEAD first; a blob another repository
//! of this push already has is mounted instead), and committing puts the manifest, so a push
//! that fails leaves no tag. The manifest goes up as the bytes we built, so the pushed digest
//! is the built one.

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::{Published, PushStats, Staged};
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events};
use crate::pipeline::oci::index::ImageOrIndex;
use crate::pipeline::oci::referrer::{Referrer, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::pipeline::oci::ImageRef;

/// How to reach registries: credentials given on the command line (else Docker's config),
/// and hosts allowed over plain HTTP (loopback always is, as Docker does).
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// User and password for every registry pushed to.
    pub credentials: Option<(String, String)>,
    /// Hosts (`host[:port]`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// PEM files of CAs to trust besides the system's.
    pub ca_files: Vec<std::path::PathBuf>,
}

/// Pushes the image to one reference.
#[derive(Debug, Clone)]
pub struct RegistryPublisher {
    /// `registry/repository[:tag]`, as given.
    pub reference: String,
    /// How to reach it.
    pub options: RegistryOptions,
    /// References pushed before this one in the same build: a blob one of them (on the same
    /// registry) has is mounted, not uploaded again.
    pub mount_from: Vec<String>,
    /// `reference` is a repository, and each image goes to the tag of its own name (compare:
    /// `REPO:PRESET`).
    pub tag_per_image: bool,
    /// Where progress goes.
    pub events: Events,
}

/// A reference we can push to; `docker://` is accepted as skopeo writes it.
pub fn parse_reference(text: &str) -> Result<Reference> {
    let text = text.strip_prefix("docker://").unwrap_or(text);
    let reference: Reference = text.parse().map_err(|e| Error::InvalidInput {
        what: "push reference",
        value: text.to_string(),
        reason: format!("{e}; expected REGISTRY/REPOSITORY[:TAG], e.g. 127.0.0.1:5000/app:1"),
    })?;
    if reference.digest().is_some() {
        return Err(Error::InvalidInput {
            what: "push reference",
            value: text.to_string(),
            reason: "a push names a tag, not a digest (the digest is the image's)".into(),
        });
    }
    Ok(reference)
}

/// Whether `registry` (`host[:port]`) is this machine.
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

/// A client for `reference`'s registry: plain HTTP for loopback (unless a CA is given) and
/// the hosts named insecure, the given CAs trusted besides the system's.
pub fn client_for(reference: &Reference, options: &RegistryOptions) -> Result<Client> {
    let registry = reference.resolve_registry().to_string();
    let mut plain: Vec<String> = options.insecure.clone();
    if is_loopback(&registry) && options.ca_files.is_empty() {
        plain.push(registry);
    }
    let mut roots = Vec::new();
    for file in &options.ca_files {
        let data = std::fs::read(file).map_err(Error::io(format!(
            "reading the CA certificate {}",
            file.display()
        )))?;
        roots.push(oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Pem,
            data,
        });
    }
    Ok(Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(plain),
        extra_root_certificates: roots,
        ..Default::default()
    }))
}

/// The credentials for `reference`'s registry: the given ones, else Docker's.
pub async fn auth_for(reference: &Reference, options: &RegistryOptions) -> Result<RegistryAuth> {
    let registry = reference.resolve_registry().to_string();
    Ok(match &options.credentials {
        Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
        None => {
            crate::adapters::fsutil::blocking(move || super::credentials::for_registry(&registry))
                .await?
        }
    })
}

/// Blobs bigger than this go up in chunks with their progress reported.
const BIG_BLOB: usize = 1 << 20;
/// The chunk size: oci-client's own maximum.
const CHUNK: usize = 4 << 20;

impl RegistryPublisher {
    /// Uploads one blob; a big one in chunks, reporting each as [`Event::Upload`] (a
    /// registry that takes no chunks gets it whole, as oci-client's own push does).
    async fn push_blob(
        &self,
        client: &Client,
        reference: &Reference,
        bytes: &[u8],
        digest: &str,
    ) -> std::result::Result<(), oci_client::errors::OciDistributionError> {
        let data = bytes::Bytes::copy_from_slice(bytes);
        if data.len() <= BIG_BLOB {
            return client.push_blob(reference, data, digest).await.map(drop);
        }
        let total = data.len() as u64;
        let chunks: Vec<bytes::Bytes> = (0..data.len())
            .step_by(CHUNK)
            .map(|start| data.slice(start..(start + CHUNK).min(data.len())))
            .collect();
        // The stream is asked for a chunk once the one before it is up.
        let mut sent = 0u64;
        let stream = futures_util::stream::iter(chunks).map(move |chunk| {
            self.events.emit(Event::Upload {
                blob: digest.to_string(),
                sent,
                total,
            });
            sent += chunk.len() as u64;
            Ok(chunk)
        });
        let pushed = client.push_blob_stream(reference, stream, digest).await;
        if let Err(oci_client::errors::OciDistributionError::SpecViolationError(_)) = pushed {
            return client.push_blob(reference, data, digest).await.map(drop);
        }
        pushed?;
        self.events.emit(Event::Upload {
            blob: digest.to_string(),
            sent: total,
            total,
        });
        Ok(())
    }

    /// Mounts `digest` from a repository pushed before on the same registry; whether it is
    /// there now.
    async fn mount(&self, client: &Client, reference: &Reference, digest: &str) -> bool {
        for source in &self.mount_from {
            let Ok(source) = parse_reference(source) else {
                continue;
            };
            if source.resolve_registry() != reference.resolve_registry()
                || source.repository() == reference.repository()
            {
                continue;
            }
            if client.mount_blob(reference, &source, digest).await.is_ok()
                && client.blob_exists(reference, digest).await.unwrap_or(false)
            {
                return true;
            }
        }
        false
    }
}

/// Turns a registry error into ours: a 401 says who failed to log in where.
pub fn push_error(
    reference: &Reference,
    user: Option<String>,
) -> impl Fn(oci_client::errors::OciDistributionError) -> Error {
    let host = reference.resolve_registry().to_string();
    move |e| {
        let host = host.clone();
        let text = crate::core::error::causes(&e);
        let lower = text.to_lowercase();
        let message = if lower.contains("certificate") || lower.contains("tls") {
            format!("its TLS certificate is not trusted ({text}); trust the CA that signed it")
        } else if text.contains("401") || lower.contains("unauthorized") {
            match &user {
                Some(user) => format!("authentication failed for {host} as {user}"),
                None => format!(
                    "authentication failed for {host}: log in (docker login {host}) or pass a user and password"
                ),
            }
        } else {
            text
        };
        Error::Registry {
            registry: host,
            message,
        }
    }
}

#[async_trait::async_trait]
impl super::Publisher for RegistryPublisher {
    fn preflight(&self) -> Result<()> {
        parse_reference(&self.reference).map(drop)
    }

    fn holds_referrers(&self) -> bool {
        true
    }

    async fn attach(&self, referrer: &Referrer) -> Result<Option<Published>> {
        let given = parse_reference(&self.reference)?;
        let client = client_for(&given, &self.options)?;
        let auth = auth_for(&given, &self.options).await?;
        let user = match &auth {
            RegistryAuth::Basic(user, _) => Some(user.clone()),
            _ => None,
        };
        let fail = push_error(&given, user);
        client
            .auth(&given, &auth, RegistryOperation::Push)
            .await
            .map_err(&fail)?;
        for (digest, bytes) in &referrer.blobs {
            if !client.blob_exists(&given, digest).await.map_err(&fail)? {
                client
                    .push_blob(&given, bytes.clone(), digest)
                    .await
                    .map_err(&fail)?;
            }
        }
        let manifest_type = http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        client
            .push_manifest_raw(
                &given.clone_with_digest(referrer.digest.clone()),
                referrer.manifest.clone(),
                manifest_type,
            )
            .await
            .map_err(&fail)?;
        // No referrers API in distribution 2.8: the spec's fallback tag lists them.
        let tag = parse_reference(&format!(
            "{}/{}:{}",
            given.registry(),
            given.repository(),
            referrer.fallback_tag()
        ))?;
        let existing = client
            .pull_manifest_raw(&tag, &auth, &[INDEX_MEDIA_TYPE])
            .await
            .ok()
            .map(|(bytes, _)| bytes.to_vec());
        let index = referrer.listed_in(existing.as_deref())?;
        client
            .push_manifest_raw(
                &tag,
                index,
                http::HeaderValue::from_static(INDEX_MEDIA_TYPE),
            )
            .await
            .map_err(&fail)?;
        Ok(Some(Published {
            kind: "referrer".into(),
            location: format!(
                "{}/{}@{}",
                given.registry(),
                given.repository(),
                referrer.digest
            ),
            engine: None,
            push: None,
        }))
    }

    async fn stage(&self, content: &ImageOrIndex, name: &ImageRef) -> Result<Box<dyn Staged>> {
        let given = parse_reference(&self.reference)?;
        let reference = match self.tag_per_image {
            true => parse_reference(&format!(
                "{}/{}:{}",
                given.registry(),
                given.repository(),
                name.tag
            ))?,
            false => given,
        };
        let client = client_for(&reference, &self.options)?;
        let auth = auth_for(&reference, &self.options).await?;
        let user = match &auth {
            RegistryAuth::Basic(user, _) => Some(user.clone()),
            _ => None,
        };
        let fail = push_error(&reference, user.clone());
        client
            .auth(&reference, &auth, RegistryOperation::Push)
            .await
            .map_err(&fail)?;
        let mut stats = PushStats::default();
        for (digest, bytes) in content.blobs() {
            if client
                .blob_exists(&reference, digest)
                .await
                .map_err(&fail)?
            {
                stats.skipped_blobs += 1;
                stats.skipped_bytes += bytes.len() as u64;
                continue;
            }
            if self.mount(&client, &reference, digest).await {
                stats.mounted_blobs += 1;
                continue;
            }
            if bytes.len() > 1 << 20 {
                self.events.emit(Event::Step {
                    message: format!(
                        "pushing {} ({}) to {}",
                        &digest[..19.min(digest.len())],
                        crate::core::metrics::human_size(bytes.len() as u64),
                        reference.resolve_registry()
                    ),
                });
            }
            self.push_blob(&client, &reference, bytes, digest)
                .await
                .map_err(&fail)?;
            stats.uploaded_blobs += 1;
            stats.uploaded_bytes += bytes.len() as u64;
        }
        // An index's images go up by digest now (no tag names them); the tag on commit.
        if let ImageOrIndex::Index(index) = content {
            for image in &index.images {
                client
                    .push_manifest_raw(
                        &reference.clone_with_digest(image.manifest.digest.clone()),
                        image.manifest.bytes.clone(),
                        http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
                    )
                    .await
                    .map_err(&fail)?;
            }
        }
        Ok(Box::new(StagedPush {
            client,
            reference,
            manifest: content.root().bytes.clone(),
            digest: content.root().digest.clone(),
            media_type: content.media_type(),
            user,
            auth,
            stats,
        }))
    }
}

/// Blobs are up; the manifest (the tag) is not.
struct StagedPush {
    client: Client,
    reference: Reference,
    manifest: Vec<u8>,
    digest: String,
    media_type: &'static str,
    user: Option<String>,
    auth: RegistryAuth,
    stats: PushStats,
}

#[async_trait::async_trait]
impl Staged for StagedPush {
    fn describe(&self) -> String {
        format!("registry {}", self.reference)
    }

    async fn commit(self: Box<Self>) -> Result<Published> {
        let fail = push_error(&self.reference, self.user.clone());
        let content_type = http::HeaderValue::from_static(self.media_type);
        self.client
            .push_manifest_raw(&self.reference, self.manifest.clone(), content_type)
            .await
            .map_err(&fail)?;
        // The registry names what it stored by digest: it must be ours.
        let pushed = self.reference.clone_with_digest(self.digest.clone());
        let (_, stored) = self
            .client
            .pull_manifest_raw(&pushed, &self.auth, &[self.media_type])
            .await
            .map_err(&fail)?;
        if stored != self.digest {
            return Err(Error::Registry {
                registry: self.reference.resolve_registry().to_string(),
                message: format!(
                    "the registry stored the manifest as {stored}, not as the built {}",
                    self.digest
                ),
            });
        }
        Ok(Published {
            kind: "registry".into(),
            location: format!("{}@{}", self.reference, self.digest),
            engine: None,
            push: Some(self.stats),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_loopback_hosts() {
        let r = parse_reference("docker://127.0.0.1:5000/app:1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "app");
        assert!(parse_reference("127.0.0.1:5000/app@sha256:0000000000000000000000000000000000000000000000000000000000000000").is_err());
        assert!(parse_reference("UPPER/Case:1").is_err());
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com"));
    }
}
