//! The image itself: a system layer (users, `/tmp`), an app layer (the binary), and the config
//! and manifest that describe them, all as canonical JSON so the digest is reproducible.

use std::collections::{BTreeMap, HashMap};

use oci_spec::image::{
    Arch, DescriptorBuilder, HistoryBuilder, ImageConfigurationBuilder, ImageManifestBuilder,
    MediaType, Os, RootFsBuilder,
};

use super::canonical_json;
use super::layer::{self, Entry, Layer};
use crate::adapters::fsutil::sha256_digest;
use crate::core::error::{Error, Result};

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

// On the wire and in stored requests, `NAME:UID:GID`; root is taken as written there: it was
// allowed (`--allow-root`) where the request was made.
crate::core::text::serde_as_text!(RuntimeUser);

impl std::fmt::Display for RuntimeUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.name, self.uid, self.gid)
    }
}

impl std::str::FromStr for RuntimeUser {
    type Err = Error;
    fn from_str(spec: &str) -> Result<RuntimeUser> {
        RuntimeUser::parse(spec, true)
    }
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
            what: "user",
            value: spec.to_string(),
            reason: reason.to_string(),
        };
        let id = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| invalid("ids must be numbers from 0 to 4294967295"))
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let user = match parts.as_slice() {
            [name] if name.parse::<u32>().is_err() => {
                let ids = if *name == "root" { "0:0" } else { "1000:1000" };
                return Err(invalid(&format!(
                    "a name needs its ids, as NAME:UID:GID (such as {name}:{ids}): a FROM scratch image has no user database to look {name} up in"
                )));
            }
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
    /// How our layers are compressed.
    pub compression: layer::Codec,
    /// At which of the codec's levels.
    pub compression_level: u32,
}

/// `PATH` for images whose base sets none (scratch).
const DEFAULT_PATH: &str = "PATH=/usr/local/bin:/usr/bin:/bin";

/// A blob that is not a layer (config or manifest), with its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// `sha256:` of the bytes.
    pub digest: String,
}

impl Blob {
    pub(crate) fn new(bytes: Vec<u8>) -> Blob {
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
        manifest_descriptor(&self.manifest, &self.architecture, annotations)
    }
}

/// The descriptor of an image's `manifest`, with its platform (linux on `architecture`).
pub fn manifest_descriptor(
    manifest: &Blob,
    architecture: &str,
    annotations: HashMap<String, String>,
) -> oci_spec::image::Descriptor {
    let mut descriptor = descriptor(
        MediaType::ImageManifest,
        &manifest.digest,
        manifest.bytes.len() as u64,
    );
    descriptor.set_platform(Some(
        oci_spec::image::PlatformBuilder::default()
            .architecture(Arch::from(architecture))
            .os(Os::Linux)
            .build()
            .expect("platform has all required fields"),
    ));
    if !annotations.is_empty() {
        descriptor.set_annotations(Some(annotations));
    }
    descriptor
}

/// An image whose layers are files, too big to hold in memory (a builder's root
/// filesystem), for [`super::archive::write_files`].
#[derive(Debug)]
pub struct FileImage {
    /// The layers, bottom first: what each one's [`layer::LayerWriter`] wrote, and the file
    /// it wrote to.
    pub layers: Vec<(layer::Written, std::fs::File)>,
    /// The config JSON.
    pub config: Blob,
    /// The manifest JSON.
    pub manifest: Blob,
    /// The OCI architecture.
    pub architecture: String,
}

impl FileImage {
    /// The image of `layers` with `config` (env, labels, working dir, ...) and `history`,
    /// made at `created` (seconds since the epoch) for linux on `architecture`: its config
    /// and manifest written as every image's are.
    pub fn new(
        layers: Vec<(layer::Written, std::fs::File)>,
        config: oci_spec::image::Config,
        history: Vec<oci_spec::image::History>,
        created: u64,
        architecture: &str,
    ) -> Result<FileImage> {
        let diff_ids = layers.iter().map(|(l, _)| l.diff_id.clone()).collect();
        let config = config_blob(created, architecture, config, history, diff_ids)?;
        let descriptors = layers
            .iter()
            .map(|(l, _)| (l.media_type.clone(), l.digest.as_str(), l.size));
        let manifest = manifest_blob(&config, descriptors, &BTreeMap::new())?;
        Ok(FileImage {
            layers,
            config,
            manifest,
            architecture: architecture.to_string(),
        })
    }
}

/// `text` with `line` added as its last line.
fn appended(text: &str, line: &str) -> String {
    let mut file = text.to_string();
    if !file.is_empty() && !file.ends_with('\n') {
        file.push('\n');
    }
    file + line
}

/// `/etc/passwd` and `/etc/group` with the runtime user in them: fresh files (root and the
/// user) on scratch; on a base, its own files with the user added, or `None` for a file that
/// needs no change because the base already has the user (or the group).
fn accounts(
    u: &RuntimeUser,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(Option<String>, Option<String>)> {
    let collision = |what: &str, id: Option<String>| Error::InvalidInput {
        what: "user",
        value: format!("{}:{}:{}", u.name, u.uid, u.gid),
        reason: format!(
            "the base already has a {what} {} with {what} id {}; pick another name or that id",
            u.name,
            id.unwrap_or_default()
        ),
    };
    let field = |line: &str, n: usize| line.split(':').nth(n).map(str::to_string);
    let named = |file: &str| -> Option<String> {
        file.lines()
            .find(|l| field(l, 0).as_deref() == Some(u.name.as_str()))
            .map(str::to_string)
    };
    let user_line = format!(
        "{0}:x:{1}:{2}:{0}:/{3}:/sbin/nologin\n",
        u.name,
        u.uid,
        u.gid,
        u.home()
    );
    let group_line = format!("{}:x:{}:\n", u.name, u.gid);
    let passwd = match passwd {
        None if u.uid == 0 => Some("root:x:0:0:root:/root:/sbin/nologin\n".to_string()),
        None => Some(appended(
            "root:x:0:0:root:/root:/sbin/nologin\n",
            &user_line,
        )),
        Some(existing) => match named(existing).map(|l| field(&l, 2)) {
            Some(Some(uid)) if uid == u.uid.to_string() => None,
            Some(uid) => return Err(collision("user", uid)),
            None => Some(appended(existing, &user_line)),
        },
    };
    let group = match group {
        None if u.gid == 0 => Some("root:x:0:\n".to_string()),
        None => Some(appended("root:x:0:\n", &group_line)),
        Some(existing)
            if existing
                .lines()
                .any(|l| field(l, 2) == Some(u.gid.to_string())) =>
        {
            None
        }
        Some(existing) => match named(existing) {
            Some(line) => return Err(collision("group", field(&line, 2))),
            None => Some(appended(existing, &group_line)),
        },
    };
    Ok((passwd, group))
}

/// The layer holding the binary at `spec.binary_path` (root-owned, 0755).
pub fn app_layer(binary: &[u8], spec: &ImageSpec) -> Result<Layer> {
    layer::build(
        vec![Entry::file(
            spec.binary_path.trim_start_matches('/'),
            binary,
            0o755,
        )],
        spec.created,
        spec.compression,
        spec.compression_level,
    )
}

/// What assembly needs of a base image: its layers (kept byte for byte), its config (merged
/// under ours) and a view of its files. The `base` module reads images into this shape.
#[derive(Clone, Copy)]
pub struct Underlay<'a> {
    /// The base's layers, bottom first, as stored.
    pub layers: &'a [Layer],
    /// The base's config.
    pub config: &'a oci_spec::image::ImageConfiguration,
    /// The base's merged filesystem.
    pub files: &'a dyn BaseFiles,
}

/// The files of a base image that assembly looks at.
pub trait BaseFiles {
    /// Whether `path` (relative, no leading `/`) exists in the base.
    fn exists(&self, path: &str) -> bool;
    /// The bytes of an account file (`etc/passwd`, `etc/group`) when the base has it.
    fn account_file(&self, path: &str) -> Option<&[u8]>;
}

/// Assembles the image for `binary` as `spec` describes it, on `base` when there is one.
pub fn assemble(binary: &[u8], spec: &ImageSpec, base: Option<Underlay<'_>>) -> Result<Image> {
    assemble_layers(app_layer(binary, spec)?, spec, base)
}

/// Assembles the image around a ready binary layer (see [`app_layer`]): the base's layers
/// byte for byte, then ours; the config merged as `docker build` would.
pub fn assemble_layers(app: Layer, spec: &ImageSpec, base: Option<Underlay<'_>>) -> Result<Image> {
    let u = &spec.user;
    let mut layers: Vec<Layer> = base.map(|b| b.layers.to_vec()).unwrap_or_default();
    let mut history_entries = Vec::new();
    // On a base that already has everything, there is no system layer at all.
    if let Some(system) = system_layer(spec, base.map(|b| b.files))? {
        layers.push(system);
        history_entries.push(format!("ruchy-image: user {} {}:{}", u.name, u.uid, u.gid));
    }
    layers.push(app);
    history_entries.push(spec.created_by.clone());

    let user = format!("{}:{}", u.uid, u.gid);
    let entrypoint = vec![spec.binary_path.clone()];
    let container = container_config(spec, base, &user, &entrypoint);
    let diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
    let history = history(base, history_entries);
    let config = config_blob(
        spec.created,
        &spec.architecture,
        container,
        history,
        diff_ids,
    )?;
    let descriptors = layers
        .iter()
        .map(|l| (l.media_type.clone(), l.digest.as_str(), l.size()));
    let manifest = manifest_blob(&config, descriptors, &spec.annotations)?;
    Ok(Image {
        layers,
        config,
        manifest,
        user,
        entrypoint,
        architecture: spec.architecture.clone(),
    })
}

/// The layer of system files the runtime user needs: `/etc/passwd` and `/etc/group` with the
/// user in them, `/tmp`, the user's home and the working directory, each only when the base
/// (if any) lacks it. `None` when the base lacks nothing.
fn system_layer(spec: &ImageSpec, files: Option<&dyn BaseFiles>) -> Result<Option<Layer>> {
    let u = &spec.user;
    let exists = |path: &str| files.is_some_and(|fs| fs.exists(path));
    let text = |path: &str| {
        files
            .and_then(|fs| fs.account_file(path))
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let (passwd, group) = accounts(
        u,
        text("etc/passwd").as_deref(),
        text("etc/group").as_deref(),
    )?;

    let mut system = Vec::new();
    if let Some(passwd) = &passwd {
        system.push(Entry::file("etc/passwd", passwd.as_bytes(), 0o644));
    }
    if let Some(group) = &group {
        system.push(Entry::file("etc/group", group.as_bytes(), 0o644));
    }
    if !exists("tmp") {
        system.push(Entry::dir("tmp", 0o1777));
    }
    if !exists(&u.home()) {
        system.push(Entry::dir(u.home(), 0o700).owned_by(u.uid, u.gid));
    }
    let workdir = spec.workdir.trim_matches('/');
    if !workdir.is_empty() && !exists(workdir) {
        system.push(Entry::dir(workdir, 0o755).owned_by(u.uid, u.gid));
    }
    if system.is_empty() {
        return Ok(None);
    }
    layer::build(
        system,
        spec.created,
        spec.compression,
        spec.compression_level,
    )
    .map(Some)
}

/// The container config (env, user, entrypoint, labels, working dir, ports), merged with the
/// base's as `docker build` would.
fn container_config(
    spec: &ImageSpec,
    base: Option<Underlay<'_>>,
    user: &str,
    entrypoint: &[String],
) -> oci_spec::image::Config {
    // Start from the base's config (its Env, Volumes, StopSignal, labels stay), then apply
    // ours. Setting the entrypoint resets Cmd, as in a Dockerfile.
    let mut config = base
        .and_then(|b| b.config.config().clone())
        .unwrap_or_default();
    let mut env: Vec<String> = config.env().clone().unwrap_or_default();
    let key = |var: &str| var.split('=').next().unwrap_or_default().to_string();
    if !env.iter().any(|e| key(e) == "PATH") {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    for var in &spec.env {
        env.retain(|e| key(e) != key(var));
        env.push(var.clone());
    }
    config.set_env(Some(env));
    config.set_user(Some(user.to_string()));
    config.set_entrypoint(Some(entrypoint.to_vec()));
    config.set_cmd(None);
    let mut labels: HashMap<String, String> = config.labels().clone().unwrap_or_default();
    labels.extend(spec.labels.clone());
    config.set_labels(Some(labels));
    // `--workdir` wins; otherwise a base keeps its own and scratch has none.
    if !spec.workdir.trim_matches('/').is_empty() {
        config.set_working_dir(Some(spec.workdir.clone()));
    } else if base.is_none() {
        config.set_working_dir(None);
    }
    let mut ports = config.exposed_ports().clone().unwrap_or_default();
    for port in &spec.ports {
        if !ports.contains(port) {
            ports.push(port.clone());
        }
    }
    config.set_exposed_ports((!ports.is_empty()).then_some(ports));
    config
}

/// The base's history with an entry for each layer we add.
fn history(base: Option<Underlay<'_>>, ours: Vec<String>) -> Vec<oci_spec::image::History> {
    // History entries carry no time of their own: the image's `created` says it once.
    let mut history = base
        .and_then(|b| b.config.history().clone())
        .unwrap_or_default();
    history.extend(ours.into_iter().map(|created_by| {
        HistoryBuilder::default()
            .created_by(created_by)
            .build()
            .expect("history has no required fields")
    }));
    history
}

/// The image config blob of every image this tool writes: `config` and `history` over
/// layers with `diff_ids`, made at `created` (seconds since the epoch) for linux on
/// `architecture`, as canonical JSON.
pub fn config_blob(
    created: u64,
    architecture: &str,
    config: oci_spec::image::Config,
    history: Vec<oci_spec::image::History>,
    diff_ids: Vec<String>,
) -> Result<Blob> {
    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(created),
    )
    .to_string();
    let configuration = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::from(architecture))
        .os(Os::Linux)
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .expect("rootfs has all required fields"),
        )
        .history(history)
        .build()
        .expect("image configuration has all required fields");
    Ok(Blob::new(canonical_json(&configuration).map_err(
        |source| Error::Json {
            what: "the image config",
            source,
        },
    )?))
}

/// The manifest blob of every image this tool writes, naming `config` and the layers (each
/// as media type, digest and size), with `annotations`, as canonical JSON.
pub fn manifest_blob<'a>(
    config: &Blob,
    layers: impl IntoIterator<Item = (MediaType, &'a str, u64)>,
    annotations: &BTreeMap<String, String>,
) -> Result<Blob> {
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
                .into_iter()
                .map(|(media_type, digest, size)| descriptor(media_type, digest, size))
                .collect::<Vec<_>>(),
        )
        .build()
        .expect("manifest has all required fields");
    if !annotations.is_empty() {
        manifest.set_annotations(Some(annotations.clone().into_iter().collect()));
    }
    Ok(Blob::new(canonical_json(&manifest).map_err(|source| {
        Error::Json {
            what: "the image manifest",
            source,
        }
    })?))
}

/// A descriptor of a blob, as the manifest lists it.
fn descriptor(media_type: MediaType, digest: &str, size: u64) -> oci_spec::image::Descriptor {
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
            compression: layer::Codec::Gzip,
            compression_level: 12,
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
        let a = assemble(b"\x7fELF fake", &spec(), None).unwrap();
        let b = assemble(b"\x7fELF fake", &spec(), None).unwrap();
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
        let a = assemble(b"one", &spec(), None).unwrap();
        let b = assemble(b"two", &spec(), None).unwrap();
        assert_eq!(a.layers[0].digest, b.layers[0].digest);
        assert_ne!(a.layers[1].digest, b.layers[1].digest);
        assert_ne!(a.manifest.digest, b.manifest.digest);
    }
}
