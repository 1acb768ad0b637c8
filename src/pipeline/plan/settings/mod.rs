//! Project settings: `build`'s flags kept with the project, in `[package.metadata.ruchy-image]`
//! of its Cargo.toml (a single `.rs` file's own manifest too) or in a `ruchy-image.toml`
//! beside the file or in the project directory (the same keys, at the top level):
//!
//! ```toml
//! [package.metadata.ruchy-image]
//! optimize = "aggressive"
//! env = ["GREETING=hi"]
//! port = ["8080"]
//! max-image-size = "2MB"
//!
//! [package.metadata.ruchy-image.presets.size]
//! panic = "abort"
//! ```
//!
//! One key per long flag, named as the flag, with the flag's value syntax: a list where the
//! flag repeats, `true` for a flag that takes no value. `presets.NAME` tables hold the
//! per-flag overrides (opt-level, lto, …) of one preset, over those of every preset. Flags
//! win over the file, the file over the defaults; a flag replaces the file's list.
//! [`resolve`] records where each setting came from in [`Request::settings`].
//!
//! Every value goes through the parser its flag's value goes through, so a value is valid in
//! a file exactly when it is valid on the command line; an unknown key, a value of the wrong
//! type or one the flag refuses is an [`Error::Setting`] naming the file, line and column.
//!
//! A service takes the settings of the project it is sent, for what the request does not
//! say; what belongs to the machine that asked (its paths, its builder, its outputs, what its
//! command line prints) is ignored there and the record says so.

mod keys;
mod table;

use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, TableLike};

use super::request::{BuilderChoice, Load, Request};
use crate::core::budget::{Budget, Limit};
use crate::core::error::{Error, Result};
use crate::core::platform::Platform;
use crate::core::preset::{OptLevel, Overrides, Preset, Strip};
use crate::pipeline::base::BaseRef;
use crate::pipeline::build::ImageOptions;
use crate::pipeline::compile::PullPolicy;
use crate::pipeline::oci::image::RuntimeUser;
use crate::pipeline::oci::layer::Codec;
pub use keys::{find_key, partner, Key, Scope, Use, BUILD_ONLY, KEYS, PAIRS, REFUSED};
use keys::{Bool, List, Number, PathList, Shape, Shell, Text, TextOrNumber};
use table::{entry, no_contradiction, presets, At, Entry, Toml, Value};

/// The settings file beside a single file or in a project directory.
pub const FILE_NAME: &str = "ruchy-image.toml";

/// The table of a Cargo.toml (or a single file's manifest) that holds the settings.
pub const CARGO_TABLE: &str = "[package.metadata.ruchy-image]";

/// What a setting ignored by a service says after where it came from.
pub const IGNORED: &str = "ignored by the service";

/// The settings of one project, as read from its file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file, as reached from the source's path.
    file: PathBuf,
    /// Its name in where-it-came-from (`Cargo.toml`, `ruchy-image.toml`, `app.rs`).
    name: String,
    /// Where relative paths start: the file's directory.
    dir: PathBuf,
    entries: Vec<Entry>,
    presets: Vec<(Preset, Vec<Entry>)>,
}

impl Settings {
    /// The settings for `source` (a project directory, its Cargo.toml, or a single file):
    /// `ruchy-image.toml` in the directory or beside the file, `[package.metadata.ruchy-image]`
    /// in the project's Cargo.toml or the `.rs` file's own manifest; none when there are none.
    /// Both at once is an error: one place says what a build does. A Cargo.toml or a manifest
    /// that is not valid TOML is left for the build to report.
    pub fn find(source: &Path) -> Result<Option<Settings>> {
        if !source.exists() {
            return Ok(None);
        }
        let is_manifest = source.file_name() == Some("Cargo.toml".as_ref());
        let (dir, file) = match source.is_dir() {
            true => (source.to_path_buf(), None),
            false => {
                let parent = source.parent().unwrap_or(Path::new(""));
                let dir = match parent.as_os_str().is_empty() {
                    true => PathBuf::from("."),
                    false => parent.to_path_buf(),
                };
                (dir, (!is_manifest).then_some(source))
            }
        };
        let mut found = Vec::new();
        let beside = dir.join(FILE_NAME);
        match std::fs::read_to_string(&beside) {
            Ok(text) => {
                let text = Toml {
                    file: &beside,
                    text: &text,
                    first_line: 1,
                    table: &[],
                };
                found.extend(Settings::parse(&text, FILE_NAME, &dir, false)?);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    context: format!("reading the settings in {}", beside.display()),
                    source: e,
                })
            }
        }
        let manifest = match file {
            None => {
                let cargo = dir.join("Cargo.toml");
                std::fs::read_to_string(&cargo)
                    .ok()
                    .map(|text| (cargo, text, 1))
            }
            Some(file) if file.extension().is_some_and(|e| e == "rs") => {
                let code = std::fs::read_to_string(file).ok();
                code.and_then(|code| crate::pipeline::frontmatter::manifest_text(file, &code))
                    .map(|(text, first)| (file.to_path_buf(), text, first))
            }
            Some(_) => None,
        };
        if let Some((path, text, first_line)) = manifest {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = Toml {
                file: &path,
                text: &text,
                first_line,
                table: &["package", "metadata", "ruchy-image"],
            };
            found.extend(Settings::parse(&text, &name, &dir, true)?);
        }
        match found.len() {
            0 | 1 => Ok(found.pop()),
            _ => Err(Error::Setting {
                at: found[1].file.display().to_string(),
                message: format!(
                    "{CARGO_TABLE} here and {} both hold settings for this source: keep them in one",
                    found[0].file.display()
                ),
            }),
        }
    }

    /// Reads `text`'s settings; none when it has no settings table (`lenient`: nor when it is
    /// not valid TOML, which the build reports).
    fn parse(text: &Toml, name: &str, dir: &Path, lenient: bool) -> Result<Option<Settings>> {
        let document = match ImDocument::parse(text.text) {
            Ok(document) => document,
            Err(_) if lenient => return Ok(None),
            Err(e) => {
                let at = text.at(e.span());
                return Err(text.error(at, format!("not valid TOML: {}", e.message().trim())));
            }
        };
        let mut item = document.as_item();
        let mut table_at = text.at(None);
        for part in text.table {
            let Some(table) = item.as_table_like() else {
                return Ok(None);
            };
            let Some((key, next)) = table.get_key_value(part) else {
                return Ok(None);
            };
            table_at = text.at(key.span());
            item = next;
        }
        let Some(table) = item.as_table_like() else {
            return Err(text.error(
                table_at,
                format!("{CARGO_TABLE} must be a table of settings"),
            ));
        };
        let mut settings = Settings {
            file: text.file.to_path_buf(),
            name: name.to_string(),
            dir: dir.to_path_buf(),
            entries: Vec::new(),
            presets: Vec::new(),
        };
        for (name, _) in table.iter() {
            let (key, item) = table.get_key_value(name).expect("listed");
            let at = text.at(key.span());
            if name == "presets" {
                settings.presets = presets(text, item, at)?;
                continue;
            }
            settings.entries.push(entry(text, name, item, at, false)?);
        }
        no_contradiction(text, &settings.entries)?;
        for (_, entries) in &settings.presets {
            no_contradiction(text, entries)?;
        }
        Ok(Some(settings))
    }

    /// The file the settings are in, as reached from the source's path.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key.name == name)
    }

    fn source(&self, at: At) -> String {
        format!("{}:{}", self.name, at.line)
    }

    fn error(&self, at: At, message: impl Into<String>) -> Error {
        Error::Setting {
            at: format!("{}:{}:{}", self.file.display(), at.line, at.column),
            message: message.into(),
        }
    }

    /// Whether a flag that takes no value is set (`verbose = true`).
    pub fn flag(&self, name: &str) -> bool {
        self.entry(name)
            .is_some_and(|e| matches!(e.value, Value::Bool(true)))
    }

    /// A string setting (`server`).
    pub fn text(&self, name: &str) -> Option<String> {
        match &self.entry(name)?.value {
            Value::Text(text) => Some(text.clone()),
            _ => None,
        }
    }

    /// A path setting, relative to the settings file's directory (`-`, stdout, stays).
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.text(name).map(|p| self.resolve_path(&p))
    }

    /// Where the setting `name` came from, when it is in this file.
    pub fn source_of(&self, name: &str) -> Option<String> {
        self.entry(name).map(|e| self.source(e.at))
    }

    fn resolve_path(&self, path: &str) -> PathBuf {
        match path {
            "-" => PathBuf::from("-"),
            _ => self.dir.join(path),
        }
    }

    /// A base's path, if it names one, relative to the settings file's directory.
    fn resolve_base(&self, base: BaseRef) -> BaseRef {
        match base {
            BaseRef::OciLayout { dir, tag } => BaseRef::OciLayout {
                dir: self.dir.join(dir),
                tag,
            },
            BaseRef::DockerArchive(file) => BaseRef::DockerArchive(self.dir.join(file)),
            other => other,
        }
    }

    /// Sets what `entry` says in `request` (nothing for the shell's own settings).
    fn apply(&self, entry: &Entry, request: &mut Request, allow_root: bool) -> Result<()> {
        let value = &entry.value;
        let text = || match value {
            Value::Text(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let on = matches!(value, Value::Bool(true));
        let number = || match value {
            Value::Number(n) => *n,
            _ => 0,
        };
        let list = || match value {
            Value::List(items) => items.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        let name = entry.key.name;
        if entry.key.per_preset {
            return set_override(&mut request.overrides, name, value);
        }
        match name {
            "optimize" => request.presets = vec![text().parse()?],
            "bin" => request.source.bin = Some(text()),
            "ruchy" => request.source.ruchy = Some(self.resolve_path(&text())),
            "builder" => request.builder = builder(&text())?,
            "builder-image" => request.builder_image = Some(text()),
            "pull" => request.pull = pull(&text())?,
            "cache-dir" => request.source.cache_dir = self.resolve_path(&text()),
            "build-memory" => {
                let memory = limit(name, &text(), crate::pipeline::compile::parse_memory)?;
                request.sandbox.limits.memory = Some(memory);
            }
            "build-pids" => {
                let pids = limit(name, &text(), crate::pipeline::compile::parse_pids)?;
                request.sandbox.limits.pids = Some(pids);
            }
            "build-cpus" => {
                let cpus = limit(name, &text(), crate::pipeline::compile::parse_cpus)?;
                request.sandbox.limits.cpus = Some(cpus);
            }
            "target" => request.target = Some(text()),
            "platform" => {
                let mut platforms = Vec::new();
                for item in list() {
                    for one in item.split(',').filter(|p| !p.is_empty()) {
                        platforms.push(one.parse::<Platform>()?);
                    }
                }
                request.platforms = platforms;
            }
            "load-platform" => request.load_platform = Some(text().parse()?),
            "base" => request.bases = vec![self.resolve_base(text().parse()?)],
            "user" => request.image.user = RuntimeUser::parse(&text(), allow_root)?,
            "env" => {
                let pairs = list()
                    .into_iter()
                    .map(|e| ImageOptions::key_value("env", &e));
                let pairs = pairs.collect::<Result<Vec<_>>>()?;
                request.image.env = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            }
            "port" => {
                let ports = list().into_iter().map(|p| ImageOptions::port(&p));
                request.image.ports = ports.collect::<Result<_>>()?;
            }
            "label" => {
                let labels = list()
                    .into_iter()
                    .map(|l| ImageOptions::key_value("label", &l));
                request.image.labels = labels.collect::<Result<_>>()?;
            }
            "workdir" => request.image.workdir = ImageOptions::image_path("workdir", &text())?,
            "path" => request.image.path = Some(ImageOptions::image_path("path", &text())?),
            "source-date-epoch" => request.source_date_epoch = number(),
            "compression" => request.image.compression = codec(&text())?,
            "compression-level" => {
                let level = u32::try_from(number()).unwrap_or(u32::MAX);
                if !Codec::LEVELS.contains(&level) {
                    return Err(out_of_range("compression-level", number(), Codec::LEVELS));
                }
                request.image.compression_level = Some(level);
            }
            "max-binary-size" => {
                request.budgets.max_binary = Some(budget(Limit::Binary, name, &text())?)
            }
            "max-image-size" => {
                request.budgets.max_image = Some(budget(Limit::Image, name, &text())?)
            }
            "oci-layout" => request.outputs.oci_layout = Some(self.resolve_path(&text())),
            "output" => request.outputs.archive = Some(self.resolve_path(&text())),
            "sbom" => request.outputs.sbom = Some(self.resolve_path(&text())),
            "tag" => request.tag = Some(text().parse()?),
            "load" if on => request.outputs.load = Load::Always,
            "no-load" if on => request.outputs.load = Load::Never,
            "push" => {
                for reference in list() {
                    crate::pipeline::publish::parse_reference(&reference)?;
                }
                request.outputs.push = list();
            }
            "insecure-registry" => request.registry.insecure = list(),
            "registry-ca" => {
                request.registry.ca_files = list().iter().map(|p| self.resolve_path(p)).collect()
            }
            "no-sbom" => request.outputs.no_sbom = on,
            "sbom-format" => request.outputs.sbom_format = text().parse()?,
            "no-provenance" => request.outputs.no_provenance = on,
            "sign-key" => request.outputs.sign_key = Some(self.resolve_path(&text())),
            "no-embed-deps" => request.no_embed_deps = on,
            // allow-root is read with user; the shell's own are the shell's.
            _ => {}
        }
        Ok(())
    }

    /// Checks every value as its flag would, on a request of its own.
    fn check_values(&self, allow_root: bool) -> Result<()> {
        let mut scratch = Request::default();
        for entry in &self.entries {
            // A list's items one at a time, so an error points at the item.
            if let Value::List(items) = &entry.value {
                for (item, at) in items {
                    let one = Entry {
                        value: Value::List(vec![(item.clone(), *at)]),
                        ..entry.clone()
                    };
                    self.apply(&one, &mut scratch, allow_root)
                        .map_err(|e| self.error(*at, e.to_string()))?;
                }
            }
            self.apply(entry, &mut scratch, allow_root)
                .map_err(|e| self.error(entry.value_at, e.to_string()))?;
        }
        for entry in self.presets.iter().flat_map(|(_, entries)| entries) {
            set_override(&mut Overrides::default(), entry.key.name, &entry.value)
                .map_err(|e| self.error(entry.value_at, e.to_string()))?;
        }
        Ok(())
    }

    /// Where the error of a whole request's check came from, when a setting of this file
    /// caused it: the error with the file, line and column of that setting; else the error.
    pub fn locate(&self, request: &Request, error: Error) -> Error {
        let Error::InvalidInput { what, .. } = &error else {
            return error;
        };
        let ours = |name: &String| {
            request
                .settings
                .get(name)
                .is_some_and(|from| from.starts_with(&format!("{}:", self.name)))
        };
        let keys = causes(what);
        // A key of the top level, or of a preset's table.
        let found = keys.iter().find_map(|key| {
            if let Some(entry) = self.entry(key).filter(|_| ours(&key.to_string())) {
                return Some(entry.value_at);
            }
            self.presets.iter().find_map(|(preset, entries)| {
                let entry = entries.iter().find(|e| e.key.name == *key)?;
                ours(&format!("presets.{preset}.{key}")).then_some(entry.value_at)
            })
        });
        match found {
            Some(at) => self.error(at, error.to_string()),
            None => error,
        }
    }
}

/// The settings keys a request check's error about `what` can come from.
fn causes(what: &str) -> Vec<&'static str> {
    let overrides = KEYS.iter().filter(|k| k.per_preset).map(|k| k.name);
    match what {
        "preset" | "presets" => vec!["optimize"],
        "panic strategy for these presets" => vec!["panic", "optimize"],
        "platforms" => vec!["platform", "load-platform", "target", "base", "sbom"],
        "target for the platform" => vec!["target", "platform"],
        "static linking" => vec!["no-static-link", "base"],
        "source date epoch" => vec!["source-date-epoch"],
        "compression level" => vec!["compression-level", "compression"],
        "codegen units" => vec!["codegen-units"],
        "options for a prebuilt binary" => overrides.chain(["target"]).collect(),
        "base" | "base image" => vec!["base"],
        "target" => vec!["target"],
        "target_cpu" => vec!["target-cpu"],
        "push reference" => vec!["push"],
        "SBOM format" => vec!["sbom-format"],
        "signing key" => vec!["sign-key"],
        "image name" => vec!["bin", "tag"],
        _ => Vec::new(),
    }
}

/// An override set in `overrides` (of every preset, or of one preset's table).
fn set_override(overrides: &mut Overrides, name: &str, value: &Value) -> Result<()> {
    let text = || match value {
        Value::Text(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let on = matches!(value, Value::Bool(true));
    match name {
        "opt-level" => overrides.opt_level = Some(text().parse::<OptLevel>()?),
        "lto" => overrides.lto = Some(text().parse()?),
        "codegen-units" => {
            let n = match value {
                Value::Number(n) => *n,
                _ => 0,
            };
            let units = u32::try_from(n).unwrap_or(u32::MAX);
            if !Overrides::CODEGEN_UNITS.contains(&units) {
                return Err(out_of_range("codegen-units", n, Overrides::CODEGEN_UNITS));
            }
            overrides.codegen_units = Some(units);
        }
        "strip" => overrides.strip = Some(text().parse()?),
        "no-strip" if on => overrides.strip = Some(Strip::None),
        "panic" => overrides.panic = Some(text().parse()?),
        "target-cpu" => overrides.target_cpu = Some(text()),
        "static-link" if on => overrides.static_link = Some(true),
        "no-static-link" if on => overrides.static_link = Some(false),
        _ => {}
    }
    Ok(())
}

fn out_of_range(what: &'static str, n: u64, range: std::ops::RangeInclusive<u32>) -> Error {
    Error::InvalidInput {
        what,
        value: n.to_string(),
        reason: format!(
            "expected a number from {} to {}",
            range.start(),
            range.end()
        ),
    }
}

/// A builder limit, read by its flag's parser.
fn limit<T>(
    what: &'static str,
    text: &str,
    parse: fn(&str) -> std::result::Result<T, String>,
) -> Result<T> {
    parse(text).map_err(|reason| Error::InvalidInput {
        what,
        value: text.to_string(),
        reason,
    })
}

fn budget(limit: Limit, what: &'static str, text: &str) -> Result<Budget> {
    Budget::parse(limit, text).map_err(|reason| Error::InvalidInput {
        what,
        value: text.to_string(),
        reason,
    })
}

/// `--builder`'s values.
pub const BUILDERS: [&str; 2] = ["docker", "local"];
/// `--pull`'s values.
pub const PULLS: [&str; 3] = ["missing", "always", "never"];
/// `--compression`'s values.
pub const CODECS: [&str; 2] = ["gzip", "zstd"];

fn one_of(what: &'static str, value: &str, valid: &[&str]) -> Error {
    Error::InvalidInput {
        what,
        value: value.to_string(),
        reason: format!("valid: {}", valid.join(", ")),
    }
}

fn builder(value: &str) -> Result<BuilderChoice> {
    match value {
        "docker" => Ok(BuilderChoice::Docker),
        "local" => Ok(BuilderChoice::Local),
        _ => Err(one_of("builder", value, &BUILDERS)),
    }
}

fn pull(value: &str) -> Result<PullPolicy> {
    match value {
        "missing" => Ok(PullPolicy::Missing),
        "always" => Ok(PullPolicy::Always),
        "never" => Ok(PullPolicy::Never),
        _ => Err(one_of("pull", value, &PULLS)),
    }
}

fn codec(value: &str) -> Result<Codec> {
    match value {
        "gzip" => Ok(Codec::Gzip),
        "zstd" => Ok(Codec::Zstd),
        _ => Err(one_of("compression", value, &CODECS)),
    }
}

/// Whether the request already says what `name` is (a flag, a service's parameter), or its
/// contradicting partner.
fn given(request: &Request, name: &str) -> bool {
    request.settings.contains_key(name)
        || partner(name).is_some_and(|p| request.settings.contains_key(p))
}

/// Records where the settings a command line gave came from (`flag`, `env NAME`), by long
/// name, before [`resolve`]: those not settings ([`REFUSED`], the shell's own) are left out.
pub fn record_given<'a>(request: &mut Request, given: impl IntoIterator<Item = (&'a str, String)>) {
    for (name, from) in given {
        if find_key(name).is_some_and(|k| k.scope != Shell) {
            request.settings.insert(name.to_string(), from);
        }
    }
}

/// Records as `request` the settings a request's JSON holds (by where [`KEYS`] says it holds
/// them), when it does not say where they came from itself.
pub fn record_in_json(request: &mut Request, json: &serde_json::Value) {
    if !request.settings.is_empty() {
        return;
    }
    for key in KEYS {
        if key
            .json
            .is_some_and(|pointer| json.pointer(pointer).is_some())
        {
            request.settings.insert(key.name.into(), "request".into());
        }
    }
}

/// Resolves `request`'s settings for `usage`: what the request does not say yet
/// ([`Request::settings`] holds what it says) is taken from `settings`, and every setting
/// that applies records where it came from (`default` for the rest; a service records those
/// it ignores as such). Then the whole request is checked, and an error a setting caused
/// names its file and line. A request whose settings were resolved already (every one
/// recorded, as `build --server` sends it) takes nothing more.
pub fn resolve(settings: Option<&Settings>, request: &mut Request, usage: Use) -> Result<()> {
    if let Some(settings) = settings {
        let allow_root = given_flag(request, "allow-root") || settings.flag("allow-root");
        // Every value is checked, those the request overrides or ignores too: a file that
        // works with some flags and not without them would surprise the next build.
        settings.check_values(allow_root)?;
        let mut applied = Vec::new();
        for entry in &settings.entries {
            let name = entry.key.name;
            if given(request, name) || (usage == Use::Compare && !usage.takes(entry.key)) {
                continue;
            }
            let from = settings.source(entry.at);
            if usage == Use::Service && !usage.takes(entry.key) {
                applied.push((name.to_string(), format!("{from} ({IGNORED})")));
                continue;
            }
            settings
                .apply(entry, request, allow_root)
                .map_err(|e| settings.error(entry.value_at, e.to_string()))?;
            if entry.key.scope != Shell {
                applied.push((name.to_string(), from));
            }
        }
        // A preset's own table, for the presets built (the file's optimize is known now).
        for (preset, entries) in &settings.presets {
            if !request.presets.contains(preset) {
                continue;
            }
            for entry in entries {
                let name = entry.key.name;
                if given(request, name) {
                    continue;
                }
                let overrides = request.preset_overrides.entry(*preset).or_default();
                set_override(overrides, name, &entry.value)
                    .map_err(|e| settings.error(entry.value_at, e.to_string()))?;
                applied.push((
                    format!("presets.{preset}.{name}"),
                    settings.source(entry.at),
                ));
            }
        }
        request.settings.extend(applied);
    }
    // The rest are the defaults; one of a contradicting pair was decided with the other.
    for key in KEYS.iter().filter(|k| usage.takes(k)) {
        if !request.settings.contains_key(key.name) {
            let decided = partner(key.name).and_then(|p| request.settings.get(p));
            let from = decided.cloned().unwrap_or_else(|| "default".to_string());
            request.settings.insert(key.name.to_string(), from);
        }
    }
    let checked = request.check().and_then(|()| match request.is_prebuilt() {
        true => request.check_prebuilt(),
        false => Ok(()),
    });
    match (checked, settings) {
        (Err(error), Some(settings)) => Err(settings.locate(request, error)),
        (Err(error), None) => Err(error),
        (Ok(()), _) => Ok(()),
    }
}

/// Whether a flag that takes no value was given in the request (so it is on).
fn given_flag(request: &Request, name: &str) -> bool {
    request
        .settings
        .get(name)
        .is_some_and(|from| from == "flag" || from.starts_with("env "))
}

#[cfg(test)]
mod tests {
    use super::table::closest;
    use super::*;
    use crate::core::preset::Lto;

    /// A project directory holding `files`, and its settings.
    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Option<Settings>>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let found = Settings::find(dir.path());
        (dir, found)
    }

    const PACKAGE: &str = "[package]\nname = \"app\"\nversion = \"0.1.0\"\n\n";

    /// The request a build of `dir` with `given` flags (name, `flag`) resolves to.
    fn resolved(dir: &Path, given: &[&str], usage: Use) -> Result<Request> {
        let mut request = Request::new(dir);
        record_given(&mut request, given.iter().map(|g| (*g, "flag".to_string())));
        let settings = Settings::find(dir)?;
        resolve(settings.as_ref(), &mut request, usage)?;
        Ok(request)
    }

    fn error_of(files: &[(&str, &str)]) -> String {
        let (dir, found) = project(files);
        let error = match found {
            Err(e) => e,
            Ok(_) => resolved(dir.path(), &[], Use::Build).unwrap_err(),
        };
        assert!(error.is_usage(), "{error}");
        error
            .to_string()
            .replace(&dir.path().display().to_string(), "DIR")
    }

    #[test]
    fn scalars_lists_and_flags_reach_the_request_with_where_they_came_from() {
        let (dir, _) = project(&[(
            "Cargo.toml",
            &format!(
                "{PACKAGE}[package.metadata.ruchy-image]\n\
                 optimize = \"aggressive\"\n\
                 env = [\"GREETING=hi\", \"EMPTY=\"]\n\
                 label = [\"team=web\"]\n\
                 port = [\"8080\", \"53/udp\"]\n\
                 platform = [\"linux/amd64,linux/arm64\"]\n\
                 opt-level = 3\n\
                 codegen-units = 4\n\
                 no-strip = true\n\
                 max-image-size = \"2MB\"\n\
                 max-binary-size = 400000\n\
                 tag = \"web:dev\"\n\
                 user = \"web:1000:1000\"\n\
                 workdir = \"/srv\"\n\
                 compression = \"zstd\"\n\
                 compression-level = 12\n\
                 source-date-epoch = 86400\n\
                 push = [\"registry.example/web:dev\"]\n\
                 builder = \"local\"\n\
                 pull = \"never\"\n\
                 build-memory = \"2GiB\"\n\
                 build-pids = 512\n\
                 build-cpus = 1.5\n\
                 oci-layout = \"out/layout\"\n"
            ),
        )]);
        let request = resolved(dir.path(), &[], Use::Build).unwrap();
        assert_eq!(request.presets, [Preset::Aggressive]);
        let limits = request.sandbox.limits;
        assert_eq!(
            (limits.memory, limits.pids, limits.cpus),
            (Some(2 << 30), Some(512), Some(1.5))
        );
        assert_eq!(request.image.env, ["GREETING=hi", "EMPTY="]);
        assert_eq!(request.image.labels["team"], "web");
        assert_eq!(request.image.ports, ["8080/tcp", "53/udp"]);
        assert_eq!(request.platforms, Platform::ALL);
        assert_eq!(request.overrides.opt_level, Some("3".parse().unwrap()));
        assert_eq!(request.overrides.codegen_units, Some(4));
        assert_eq!(request.overrides.strip, Some(Strip::None));
        assert_eq!(request.budgets.max_image.as_ref().unwrap().bytes, 2_000_000);
        assert_eq!(request.budgets.max_binary.as_ref().unwrap().bytes, 400_000);
        assert_eq!(request.tag.as_ref().unwrap().full, "web:dev");
        assert_eq!(request.image.user.to_string(), "web:1000:1000");
        assert_eq!(request.image.workdir, "/srv");
        assert_eq!(request.image.compression, Codec::Zstd);
        assert_eq!(request.image.compression_level, Some(12));
        assert_eq!(request.source_date_epoch, 86400);
        assert_eq!(request.outputs.push, ["registry.example/web:dev"]);
        assert_eq!(request.builder, BuilderChoice::Local);
        assert_eq!(request.pull, PullPolicy::Never);
        // Paths are the file's directory's.
        assert_eq!(
            request.outputs.oci_layout.as_deref(),
            Some(dir.path().join("out/layout").as_path())
        );
        assert_eq!(request.settings["optimize"], "Cargo.toml:6");
        assert_eq!(request.settings["env"], "Cargo.toml:7");
        assert_eq!(request.settings["oci-layout"], "Cargo.toml:28");
        assert_eq!(request.settings["base"], "default");
        assert_eq!(request.settings["lto"], "default");
        // Every setting of build says where it came from; the shell's own are the shell's.
        for key in KEYS.iter().filter(|k| k.scope != Shell) {
            assert!(request.settings.contains_key(key.name), "{}", key.name);
        }
        assert!(!request.settings.contains_key("verbose"));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_defaults() {
        let (dir, _) = project(&[(
            FILE_NAME,
            "optimize = \"nasa\"\nlto = \"thin\"\nenv = [\"A=file\"]\nload = true\nverbose = true\n",
        )]);
        // The command line gave --optimize, --env and --no-load.
        let mut request = Request::new(dir.path());
        request.presets = vec![Preset::Size];
        request.image.env = vec!["B=flag".into()];
        let given = ["optimize", "env", "no-load"].map(|g| (g, "flag".to_string()));
        record_given(&mut request, given);
        let settings = Settings::find(dir.path()).unwrap().unwrap();
        resolve(Some(&settings), &mut request, Use::Build).unwrap();
        assert_eq!(request.presets, [Preset::Size]);
        // A flag replaces the file's list.
        assert_eq!(request.image.env, ["B=flag"]);
        assert_eq!(request.overrides.lto, Some(Lto::Thin));
        assert_eq!(
            request.outputs.load,
            Load::Never,
            "--no-load stands for load too"
        );
        assert_eq!(request.settings["optimize"], "flag");
        assert_eq!(request.settings["lto"], "ruchy-image.toml:2");
        assert_eq!(request.settings["target"], "default");
        assert!(settings.flag("verbose"));
        assert_eq!(settings.source_of("verbose").unwrap(), "ruchy-image.toml:5");
    }

    #[test]
    fn a_preset_s_table_overrides_that_preset_only_and_flags_win_over_it() {
        let (dir, _) = project(&[(
            FILE_NAME,
            "lto = \"off\"\ncodegen-units = 16\n\n[presets.size]\nlto = \"thin\"\npanic = \"abort\"\n\n[presets.aggressive]\ncodegen-units = 2\n",
        )]);
        let mut request = Request::new(dir.path());
        request.presets = vec![Preset::Size, Preset::Balanced];
        let settings = Settings::find(dir.path()).unwrap().unwrap();
        resolve(Some(&settings), &mut request, Use::Compare).unwrap();
        let size = request.overrides_for(Preset::Size);
        assert_eq!(size.lto, Some(Lto::Thin));
        assert_eq!(size.codegen_units, Some(16), "from every preset's");
        assert_eq!(request.overrides_for(Preset::Balanced).lto, Some(Lto::Off));
        assert_eq!(request.settings["presets.size.lto"], "ruchy-image.toml:5");
        // aggressive is not built: its table is not applied or recorded.
        assert!(!request.preset_overrides.contains_key(&Preset::Aggressive));
        assert!(!request
            .settings
            .contains_key("presets.aggressive.codegen-units"));

        let mut request = Request::new(dir.path());
        request.presets = vec![Preset::Size];
        request.overrides.lto = Some(Lto::Fat);
        record_given(&mut request, [("lto", "flag".to_string())]);
        resolve(Some(&settings), &mut request, Use::Build).unwrap();
        assert_eq!(request.overrides_for(Preset::Size).lto, Some(Lto::Fat));
        assert_eq!(
            request.overrides_for(Preset::Size).panic,
            Some(crate::core::preset::Panic::Abort)
        );
        assert!(!request.settings.contains_key("presets.size.lto"));
    }

    #[test]
    fn a_file_beside_a_single_file_and_a_rs_file_s_own_manifest_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app.rs");
        std::fs::write(&app, "fn main() {}\n").unwrap();
        assert!(Settings::find(&app).unwrap().is_none());
        std::fs::write(dir.path().join(FILE_NAME), "port = [\"9000\"]\n").unwrap();
        let mut request = Request::new(&app);
        resolve(
            Settings::find(&app).unwrap().as_ref(),
            &mut request,
            Use::Build,
        )
        .unwrap();
        assert_eq!(request.image.ports, ["9000/tcp"]);
        assert_eq!(request.settings["port"], "ruchy-image.toml:1");

        let script = dir.path().join("script.rs");
        std::fs::write(
            &script,
            "#!/usr/bin/env cargo\n---\n[package]\nedition = \"2021\"\n\n[package.metadata.ruchy-image]\nlabel = [\"kind=script\"]\n---\nfn main() {}\n",
        )
        .unwrap();
        // Both places at once: one must go.
        let error = Settings::find(&script).unwrap_err().to_string();
        assert!(error.contains("both hold settings"), "{error}");
        std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        let settings = Settings::find(&script).unwrap().unwrap();
        let mut request = Request::new(&script);
        resolve(Some(&settings), &mut request, Use::Build).unwrap();
        assert_eq!(request.image.labels["kind"], "script");
        assert_eq!(request.settings["label"], "script.rs:7");
        // A Cargo.toml given as the source is its project's.
        let (project_dir, _) = project(&[(
            "Cargo.toml",
            &format!("{PACKAGE}[package.metadata.ruchy-image]\nbin = \"server\"\n"),
        )]);
        let manifest = project_dir.path().join("Cargo.toml");
        let settings = Settings::find(&manifest).unwrap().unwrap();
        assert_eq!(settings.text("bin").as_deref(), Some("server"));
        // No table, or a Cargo.toml that is not TOML (the build says so): no settings.
        assert!(project(&[("Cargo.toml", PACKAGE)]).1.unwrap().is_none());
        assert!(project(&[("Cargo.toml", "[package\n")])
            .1
            .unwrap()
            .is_none());
    }

    #[test]
    fn unknown_keys_wrong_types_and_refused_values_name_the_file_line_and_column() {
        let cargo = |table: &str| format!("{PACKAGE}[package.metadata.ruchy-image]\n{table}");
        let cases: &[(&str, String, &str)] = &[
            (FILE_NAME, "optimise = \"size\"\n".into(), "DIR/ruchy-image.toml:1:1: unknown setting `optimise`: did you mean `optimize`?"),
            (FILE_NAME, "\ncolour = 1\n".into(), "DIR/ruchy-image.toml:2:1: unknown setting `colour`: settings are named"),
            ("Cargo.toml", cargo("env = \"A=b\"\n"), "DIR/Cargo.toml:6:7: `env` takes a list of strings (the flag repeated), such as env = [\"…\"], not string"),
            (FILE_NAME, "port = [8080]\n".into(), "DIR/ruchy-image.toml:1:9: `port` takes a list of strings"),
            (FILE_NAME, "optimize = 3\n".into(), "ruchy-image.toml:1:12: `optimize` takes a string"),
            (FILE_NAME, "no-strip = \"yes\"\n".into(), "`no-strip` takes true or false"),
            (FILE_NAME, "codegen-units = -1\n".into(), "`codegen-units` takes a number of 0 or more"),
            ("Cargo.toml", cargo("optimize = \"fast\"\n"), "DIR/Cargo.toml:6:12: invalid preset `fast`: valid presets are none, balanced, aggressive, nasa, size"),
            (FILE_NAME, "port = [\"80\", \"http\"]\n".into(), "DIR/ruchy-image.toml:1:15: invalid port `http`"),
            (FILE_NAME, "codegen-units = 0\n".into(), "ruchy-image.toml:1:17: invalid codegen-units `0`: expected a number from 1 to 256"),
            (FILE_NAME, "max-image-size = \"4X\"\n".into(), "ruchy-image.toml:1:18: invalid max-image-size `4X`: unknown unit"),
            (FILE_NAME, "user = \"0\"\n".into(), "ruchy-image.toml:1:8: refusing to run the image as root"),
            (FILE_NAME, "lto = \"max\"\n".into(), "invalid lto `max`: valid: off, thin, fat"),
            (FILE_NAME, "builder = \"podman\"\n".into(), "invalid builder `podman`: valid: docker, local"),
            (FILE_NAME, "platform = [\"linux/s390x\"]\n".into(), "ruchy-image.toml:1:13: invalid platform `linux/s390x`"),
            (FILE_NAME, "registry-user = \"me\"\n".into(), "ruchy-image.toml:1:1: `registry-user` cannot be a setting"),
            (FILE_NAME, "[presets.fast]\nlto = \"thin\"\n".into(), "ruchy-image.toml:1:10: invalid preset `fast`"),
            (FILE_NAME, "[presets.size]\nenv = [\"A=b\"]\n".into(), "ruchy-image.toml:2:1: `env` cannot be set per preset"),
            (FILE_NAME, "presets = 3\n".into(), "ruchy-image.toml:1:1: `presets` takes a table per preset"),
            (FILE_NAME, "strip = \"debuginfo\"\nno-strip = true\n".into(), "ruchy-image.toml:2:1: `no-strip` contradicts `strip`"),
            (FILE_NAME, "optimize = \n".into(), "ruchy-image.toml:1:12: not valid TOML"),
            ("Cargo.toml", format!("{PACKAGE}[package.metadata]\nruchy-image = 1\n"), "Cargo.toml:6:1: [package.metadata.ruchy-image] must be a table"),
            // Checks of the whole request: the setting that caused it.
            (FILE_NAME, "\nno-static-link = true\n".into(), "ruchy-image.toml:2:18: invalid static linking"),
            (FILE_NAME, "optimize = \"size\"\n[presets.size]\npanic = \"unwind\"\n".into(), "ruchy-image.toml:3:9: invalid panic strategy"),
            (FILE_NAME, "compression-level = 13\n".into(), "ruchy-image.toml:1:21: invalid compression level `13`: gzip levels go from 1 to 12"),
            (FILE_NAME, "build-memory = \"1MB\"\n".into(), "ruchy-image.toml:1:16: invalid build-memory `1MB`: a builder needs at least 64MiB"),
            (FILE_NAME, "build-pids = 8\n".into(), "ruchy-image.toml:1:14: invalid build-pids `8`: a number of processes, at least 32"),
        ];
        for (file, text, expected) in cases {
            let error = error_of(&[(file, text)]);
            assert!(
                error.contains(expected),
                "{text:?}: expected {expected:?} in\n{error}"
            );
        }
        let both = error_of(&[
            (FILE_NAME, "lto = \"thin\"\n"),
            ("Cargo.toml", &cargo("lto = \"fat\"\n")),
        ]);
        assert!(
            both.starts_with("DIR/Cargo.toml: [package.metadata.ruchy-image] here and DIR/ruchy-image.toml both hold settings"),
            "{both}"
        );
    }

    #[test]
    fn a_service_takes_what_the_request_does_not_say_and_ignores_the_machine_s_settings() {
        let (dir, _) = project(&[(
            FILE_NAME,
            "optimize = \"aggressive\"\nlto = \"thin\"\noci-layout = \"out\"\nverbose = true\nenv = [\"A=b\"]\n",
        )]);
        let mut request = Request::new(dir.path());
        record_given(&mut request, [("lto", "request".to_string())]);
        request.overrides.lto = Some(Lto::Fat);
        let settings = Settings::find(dir.path()).unwrap();
        resolve(settings.as_ref(), &mut request, Use::Service).unwrap();
        assert_eq!(request.presets, [Preset::Aggressive]);
        assert_eq!(request.overrides.lto, Some(Lto::Fat));
        assert_eq!(request.image.env, ["A=b"]);
        assert!(request.outputs.oci_layout.is_none());
        assert_eq!(
            request.settings["oci-layout"],
            format!("ruchy-image.toml:3 ({IGNORED})")
        );
        assert_eq!(
            request.settings["verbose"],
            format!("ruchy-image.toml:4 ({IGNORED})")
        );
        assert!(
            !request.settings.contains_key("builder"),
            "not the service's"
        );
        // A request resolved where it was made (build --server) takes nothing more.
        let mut sent = Request::new(dir.path());
        for key in KEYS {
            sent.settings.insert(key.name.into(), "default".into());
        }
        resolve(settings.as_ref(), &mut sent, Use::Service).unwrap();
        assert_eq!(sent.presets, [Preset::Balanced]);
        assert!(sent.image.env.is_empty());
        // What a request's JSON holds is what it says.
        let mut json_request = Request::default();
        record_in_json(
            &mut json_request,
            &serde_json::json!({"presets": ["size"], "overrides": {"lto": "thin"}}),
        );
        assert_eq!(json_request.settings["optimize"], "request");
        assert_eq!(json_request.settings["lto"], "request");
        assert!(!json_request.settings.contains_key("env"));
    }

    #[test]
    fn compare_skips_build_s_outputs_and_a_prebuilt_binary_refuses_compile_settings() {
        let (dir, _) = project(&[(
            FILE_NAME,
            "optimize = \"size\"\ntag = \"x:1\"\nlabel = [\"a=b\"]\n",
        )]);
        let mut request = Request::new(dir.path());
        request.presets = Preset::ALL.to_vec();
        resolve(
            Settings::find(dir.path()).unwrap().as_ref(),
            &mut request,
            Use::Compare,
        )
        .unwrap();
        assert_eq!(request.presets, Preset::ALL);
        assert!(request.tag.is_none());
        assert_eq!(request.image.labels["a"], "b");
        assert!(!request.settings.contains_key("optimize"));

        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("app");
        std::fs::write(&binary, b"\x7fELF and the rest").unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "env = [\"A=b\"]\n\nlto = \"thin\"\n",
        )
        .unwrap();
        let mut request = Request::new(&binary);
        let error = resolve(
            Settings::find(&binary).unwrap().as_ref(),
            &mut request,
            Use::Build,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("ruchy-image.toml:3:7: invalid options for a prebuilt binary"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_value_is_refused_even_where_a_flag_overrides_it() {
        let (dir, _) = project(&[(FILE_NAME, "lto = \"max\"\n[presets.nasa]\nlto = \"thin\"\n")]);
        let error = resolved(dir.path(), &["lto"], Use::Build).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("ruchy-image.toml:1:7: invalid lto `max`"),
            "{error}"
        );
        let (dir, _) = project(&[(FILE_NAME, "[presets.nasa]\nlto = \"max\"\n")]);
        let error = resolved(dir.path(), &[], Use::Build).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("ruchy-image.toml:2:7: invalid lto `max`"),
            "{error}"
        );
    }

    #[test]
    fn pairs_and_names_are_the_flags() {
        for (a, b) in PAIRS {
            assert!(find_key(a).is_some() && find_key(b).is_some());
            assert_eq!(partner(a), Some(*b));
            assert_eq!(partner(b), Some(*a));
        }
        for name in BUILD_ONLY {
            assert!(find_key(name).is_some(), "{name}");
        }
        assert_eq!(
            closest("optimise", KEYS.iter().map(|k| k.name)),
            Some("optimize")
        );
        assert_eq!(closest("colour", KEYS.iter().map(|k| k.name)), None);
    }
}
