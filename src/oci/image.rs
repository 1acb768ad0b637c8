//! The image itself: a system layer (users, `/tmp`), an app layer (the binary), and the config
//! and manifest that describe them, all as canonical JSON so the digest is reproducible.

use std::collections::{BTreeMap, HashMap};

use oci_spec::image::{
    Arch, ConfigBuilder, DescriptorBuilder, HistoryBuilder, ImageConfigurationBuilder,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};

use super::layer::{self, Entry, Layer};
use super::{canonical_json, sha256_digest};
use crate::error::{Error, Result};

/// The user the container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeUser {
    /// Login name written to `/etc/passwd`.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

impl Default for RuntimeUser {
    /// `nonroot` 65532:65532, the distroless and ko convention.
    fn default() -> Self {
        RuntimeUser {
            name: "nonroot".into(),
            uid: 65532,
            gid: 65532,
        }
    }
}

impl RuntimeUser {
    /// Parses `NAME:UID:GID` or `UID[:GID]`. Root (uid 0) needs `allow_root`.
    pub fn parse(spec: &str, allow_root: bool) -> Result<RuntimeUser> {
        let invalid = |reason: &str| Error::InvalidInput {
            what: "--user",
            value: spec.to_string(),
            reason: reason.to_string(),
        };
        let id = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| invalid("ids must be numbers from 0 to 4294967295"))
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let user = match parts.as_slice() {
            [uid] => RuntimeUser {
                name: "appuser".into(),
                uid: id(uid)?,
                gid: id(uid)?,
            },
            [uid, gid] if uid.parse::<u32>().is_ok() => RuntimeUser {
                name: "appuser".into(),
                uid: id(uid)?,
                gid: id(gid)?,
            },
            [name, uid, gid] => RuntimeUser {
                name: name.to_string(),
                uid: id(uid)?,
                gid: id(gid)?,
            },
            _ => return Err(invalid("expected NAME:UID:GID or UID[:GID]")),
        };
        let valid_name = user.name.len() <= 32
            && user
                .name
                .starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && user
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid_name {
            return Err(invalid(
                "a user name is up to 32 of a-z, 0-9, _ and -, starting with a letter or _",
            ));
        }
        if user.uid == 0 {
            if !allow_root {
                return Err(Error::RootUser);
            }
            return Ok(RuntimeUser {
                name: "root".into(),
                uid: 0,
                gid: user.gid,
            });
        }
        if user.name == "root" {
            return Err(invalid("the name root is reserved for uid 0"));
        }
        Ok(user)
    }

    fn home(&self) -> String {
        if self.uid == 0 {
            "root".into()
        } else {
            format!("home/{}", self.name)
        }
    }
}

/// Everything that goes into the image besides the binary's bytes.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Absolute path of the binary in the image, also the entrypoint.
    pub binary_path: String,
    /// The runtime user.
    pub user: RuntimeUser,
    /// `KEY=VALUE` environment, in order.
    pub env: Vec<String>,
    /// Exposed ports, as `8080/tcp`.
    pub ports: Vec<String>,
    /// Working directory; created, owned by the runtime user, when it is not `/`.
    pub workdir: String,
    /// Config labels.
    pub labels: BTreeMap<String, String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Creation time, seconds since the epoch (`SOURCE_DATE_EPOCH`).
    pub created: u64,
    /// OCI architecture of the binary.
    pub architecture: String,
    /// What built the binary layer, for the history entry.
    pub created_by: String,
}

/// A blob that is not a layer (config or manifest), with its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// `sha256:` of the bytes.
    pub digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        Blob {
            digest: sha256_digest(&bytes),
            bytes,
        }
    }
}

/// An assembled image: layers, config and manifest, ready for any publisher.
#[derive(Debug, Clone)]
pub struct Image {
    /// The layers, base first: system files, then the binary.
    pub layers: Vec<Layer>,
    /// The config JSON.
    pub config: Blob,
    /// The manifest JSON; its digest is the image's identity.
    pub manifest: Blob,
    /// The config's `User`, as written (`uid:gid`).
    pub user: String,
    /// The entrypoint.
    pub entrypoint: Vec<String>,
    /// The OCI architecture.
    pub architecture: String,
}

impl Image {
    /// Bytes as stored: compressed layers plus config plus manifest.
    pub fn compressed_size(&self) -> u64 {
        self.layers.iter().map(Layer::size).sum::<u64>()
            + self.config.bytes.len() as u64
            + self.manifest.bytes.len() as u64
    }

    /// Bytes unpacked: the layers' tar streams.
    pub fn uncompressed_size(&self) -> u64 {
        self.layers.iter().map(|l| l.uncompressed_size).sum()
    }

    /// The binary's layer (the last one).
    pub fn binary_layer(&self) -> &Layer {
        self.layers.last().expect("an image has its binary layer")
    }

    /// The manifest's descriptor, as an index or another manifest refers to it.
    pub fn manifest_descriptor(
        &self,
        annotations: HashMap<String, String>,
    ) -> oci_spec::image::Descriptor {
        let mut descriptor = DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(
                self.manifest
                    .digest
                    .parse::<oci_spec::image::Digest>()
                    .expect("sha256 digests are valid"),
            )
            .size(self.manifest.bytes.len() as u64)
            .build()
            .expect("descriptor has all required fields");
        descriptor.set_platform(Some(
            oci_spec::image::PlatformBuilder::default()
                .architecture(Arch::from(self.architecture.as_str()))
                .os(Os::Linux)
                .build()
                .expect("platform has all required fields"),
        ));
        if !annotations.is_empty() {
            descriptor.set_annotations(Some(annotations));
        }
        descriptor
    }
}

/// The system layer: `/etc/passwd` and `/etc/group` with root and the runtime user, the
/// user's home, `/tmp` (1777) and the working directory.
fn system_entries(spec: &ImageSpec) -> (Vec<u8>, Vec<u8>) {
    let u = &spec.user;
    let mut passwd = String::from("root:x:0:0:root:/root:/sbin/nologin\n");
    let mut group = String::from("root:x:0:\n");
    if u.uid != 0 {
        passwd += &format!(
            "{}:x:{}:{}:{}:/{}:/sbin/nologin\n",
            u.name,
            u.uid,
            u.gid,
            u.name,
            u.home()
        );
    }
    if u.gid != 0 {
        group += &format!("{}:x:{}:\n", u.name, u.gid);
    }
    (passwd.into_bytes(), group.into_bytes())
}

/// Assembles the image for `binary` as `spec` describes it.
pub fn assemble(binary: &[u8], spec: &ImageSpec) -> Result<Image> {
    let (passwd, group) = system_entries(spec);
    let u = &spec.user;
    let mut system = vec![
        Entry::file("etc/passwd", &passwd, 0o644),
        Entry::file("etc/group", &group, 0o644),
        Entry::dir("tmp", 0o1777),
        Entry::dir(u.home(), 0o700).owned_by(u.uid, u.gid),
    ];
    let workdir = spec.workdir.trim_matches('/');
    if !workdir.is_empty() {
        system.push(Entry::dir(workdir, 0o755).owned_by(u.uid, u.gid));
    }
    let system = layer::build(system, spec.created)?;
    let app = layer::build(
        vec![Entry::file(
            spec.binary_path.trim_start_matches('/'),
            binary,
            0o755,
        )],
        spec.created,
    )?;
    let layers = vec![system, app];

    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(spec.created),
    )
    .to_string();
    let user = format!("{}:{}", u.uid, u.gid);
    let entrypoint = vec![spec.binary_path.clone()];
    let mut config = ConfigBuilder::default()
        .user(user.clone())
        .entrypoint(entrypoint.clone())
        .env(spec.env.clone())
        .labels(spec.labels.clone().into_iter().collect::<HashMap<_, _>>())
        .build()
        .expect("config has no required fields");
    if !workdir.is_empty() {
        config.set_working_dir(Some(spec.workdir.clone()));
    }
    if !spec.ports.is_empty() {
        config.set_exposed_ports(Some(spec.ports.clone()));
    }
    // History entries carry no time of their own: the image's `created` says it once.
    let history = [
        format!("ruchy-image: user {} {user}", u.name),
        spec.created_by.clone(),
    ]
    .into_iter()
    .map(|created_by| {
        HistoryBuilder::default()
            .created_by(created_by)
            .build()
            .expect("history has no required fields")
    })
    .collect::<Vec<_>>();
    let configuration = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::from(spec.architecture.as_str()))
        .os(Os::Linux)
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
                .build()
                .expect("rootfs has all required fields"),
        )
        .history(history)
        .build()
        .expect("image configuration has all required fields");
    let config = Blob::new(
        canonical_json(&configuration).map_err(|source| Error::Json {
            what: "the image config",
            source,
        })?,
    );

    let descriptor = |media_type: MediaType, digest: &str, size: u64| {
        DescriptorBuilder::default()
            .media_type(media_type)
            .digest(
                digest
                    .parse::<oci_spec::image::Digest>()
                    .expect("sha256 digests are valid"),
            )
            .size(size)
            .build()
            .expect("descriptor has all required fields")
    };
    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &config.digest,
            config.bytes.len() as u64,
        ))
        .layers(
            layers
                .iter()
                .map(|l| descriptor(MediaType::ImageLayerGzip, &l.digest, l.size()))
                .collect::<Vec<_>>(),
        )
        .build()
        .expect("manifest has all required fields");
    if !spec.annotations.is_empty() {
        manifest.set_annotations(Some(spec.annotations.clone().into_iter().collect()));
    }
    let manifest = Blob::new(canonical_json(&manifest).map_err(|source| Error::Json {
        what: "the image manifest",
        source,
    })?);
    Ok(Image {
        layers,
        config,
        manifest,
        user,
        entrypoint,
        architecture: spec.architecture.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ImageSpec {
        ImageSpec {
            binary_path: "/usr/local/bin/app".into(),
            user: RuntimeUser::default(),
            env: vec!["PATH=/usr/local/bin".into()],
            ports: vec!["8080/tcp".into()],
            workdir: "/".into(),
            labels: [("b".to_string(), "2".to_string()), ("a".into(), "1".into())].into(),
            annotations: [(
                "org.opencontainers.image.title".to_string(),
                "app".to_string(),
            )]
            .into(),
            created: 0,
            architecture: "amd64".into(),
            created_by: "test".into(),
        }
    }

    #[test]
    fn users_parse_and_root_needs_consent() {
        assert_eq!(
            RuntimeUser::parse("web:1000:1001", false).unwrap(),
            RuntimeUser {
                name: "web".into(),
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(RuntimeUser::parse("1000", false).unwrap().gid, 1000);
        assert_eq!(RuntimeUser::parse("1000:50", false).unwrap().gid, 50);
        assert!(matches!(
            RuntimeUser::parse("0", false),
            Err(Error::RootUser)
        ));
        assert_eq!(RuntimeUser::parse("0:0", true).unwrap().name, "root");
        for bad in ["", "abc", "Web:1:1", "a:b:c", "x:1:2:3", "root:5:5"] {
            assert!(RuntimeUser::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn assembly_is_deterministic_and_non_root() {
        let a = assemble(b"\x7fELF fake", &spec()).unwrap();
        let b = assemble(b"\x7fELF fake", &spec()).unwrap();
        assert_eq!(a.manifest.digest, b.manifest.digest);
        assert_eq!(a.layers.len(), 2);
        assert_eq!(a.user, "65532:65532");
        let config: serde_json::Value = serde_json::from_slice(&a.config.bytes).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(
            config["config"]["ExposedPorts"]["8080/tcp"],
            serde_json::json!({})
        );
        assert_eq!(
            config["rootfs"]["diff_ids"][1],
            a.layers[1].diff_id.as_str()
        );
    }

    #[test]
    fn a_new_binary_leaves_the_system_layer_alone() {
        let a = assemble(b"one", &spec()).unwrap();
        let b = assemble(b"two", &spec()).unwrap();
        assert_eq!(a.layers[0].digest, b.layers[0].digest);
        assert_ne!(a.layers[1].digest, b.layers[1].digest);
        assert_ne!(a.manifest.digest, b.manifest.digest);
    }
}
