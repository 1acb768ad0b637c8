//! A build request's options as the API takes them (query parameters, like Docker's
//! `POST /build`), checked when the build is accepted and turned into a library
//! [`Request`] when it runs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::preset::{names, Lto, OptLevel, Overrides, Panic, Preset, Strip};
use crate::pipeline::base::BaseRef;
use crate::pipeline::plan::{BuilderChoice, Load, Request};

/// The options of one build; every field is optional but `optimize`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Presets, in order (the `optimize` parameter, comma-separated).
    pub optimize: Vec<String>,
    /// The binary to build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin: Option<String>,
    /// The base image: `scratch` or an image in the builder's engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The image name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Target triple.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Platforms (`linux/amd64,linux/arm64`): several make an image index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platform: Vec<String>,
    /// Of several platforms, the one the image archive's `docker load` part holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_platform: Option<String>,
    /// Registry references to push to, with the service's own credentials (repeatable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push: Vec<String>,
    /// The per-flag overrides the CLI has (`opt_level`, `lto`, `codegen_units`, `strip`,
    /// `panic`, `target_cpu`, `static_link`).
    #[serde(flatten)]
    pub overrides: BTreeMap<String, String>,
}

/// The query parameters a build takes.
pub const PARAMETERS: &[&str] = &[
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

fn one_of<T: Copy>(what: &str, value: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            format!("invalid {what} `{value}`; valid: {}", names.join(", "))
        })
}

/// A setting named in src/core/preset.rs's table (`lto`, `strip`, `panic`), its error in the
/// service's words.
fn named<T: Copy + std::str::FromStr>(
    what: &str,
    value: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("invalid {what} `{value}`; valid: {}", names(all, name)))
}

impl Options {
    /// Reads the query parameters; an unknown one, or a value no build can take, is an error
    /// that names the valid ones.
    pub fn from_query(pairs: &[(String, String)]) -> Result<Options, String> {
        let mut options = Options::default();
        for (key, value) in pairs {
            match key.as_str() {
                "optimize" => options.optimize.extend(
                    value
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                ),
                "bin" => options.bin = Some(value.clone()),
                "base" => options.base = Some(value.clone()),
                "tag" => options.tag = Some(value.clone()),
                "target" => options.target = Some(value.clone()),
                "platform" => options.platform.extend(
                    value
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                ),
                "load_platform" => options.load_platform = Some(value.clone()),
                "push" => {
                    crate::pipeline::publish::parse_reference(value).map_err(|e| e.to_string())?;
                    options.push.push(value.clone());
                }
                other if PARAMETERS.contains(&other) => {
                    options.overrides.insert(other.to_string(), value.clone());
                }
                other => {
                    return Err(format!(
                        "unknown parameter `{other}`; valid: {}",
                        PARAMETERS.join(", ")
                    ))
                }
            }
        }
        if options.optimize.is_empty() {
            options.optimize.push(Preset::Balanced.name().to_string());
        }
        // Everything is checked now, so a build that is accepted can run.
        options.request(Path::new("."), Path::new("."))?;
        Ok(options)
    }

    /// The presets.
    pub fn presets(&self) -> Result<Vec<Preset>, String> {
        self.optimize
            .iter()
            .map(|p| p.parse::<Preset>().map_err(|e| e.to_string()))
            .collect()
    }

    fn overrides(&self) -> Result<Overrides, String> {
        let mut overrides = Overrides::default();
        for (key, value) in &self.overrides {
            match key.as_str() {
                "opt_level" => {
                    overrides.opt_level =
                        Some(value.parse::<OptLevel>().map_err(|e| e.to_string())?)
                }
                "lto" => overrides.lto = Some(named(key, value, Lto::ALL, Lto::name)?),
                "codegen_units" => {
                    let units = value.parse().ok().filter(|n: &u32| *n >= 1);
                    overrides.codegen_units = Some(units.ok_or_else(|| {
                        format!("invalid codegen_units `{value}`; expected a number of 1 or more")
                    })?)
                }
                "strip" => overrides.strip = Some(named(key, value, Strip::ALL, Strip::name)?),
                "panic" => overrides.panic = Some(named(key, value, Panic::ALL, Panic::name)?),
                "target_cpu" => overrides.target_cpu = Some(value.clone()),
                "static_link" => {
                    overrides.static_link = Some(one_of(
                        "static_link",
                        value,
                        &[("true", true), ("false", false)],
                    )?)
                }
                _ => {}
            }
        }
        Ok(overrides)
    }

    /// The library request for building `source` with these options, its images going to
    /// the archive `archive` (not into any engine), with `cache_dir` as the cache.
    pub fn request(&self, source: &Path, cache_dir: &Path) -> Result<Request, String> {
        let mut request = Request::new(source);
        request.presets = self.presets()?;
        request.overrides = self.overrides()?;
        request.source.bin = self.bin.clone();
        request.source.cache_dir = cache_dir.to_path_buf();
        if let Some(target) = &self.target {
            if !TARGETS.contains(&target.as_str()) {
                return Err(format!(
                    "invalid target `{target}`; the builder has: {}",
                    TARGETS.join(", ")
                ));
            }
        }
        request.target = self.target.clone();
        let platform = |p: &String| p.parse().map_err(|e: crate::Error| e.to_string());
        request.platforms = self
            .platform
            .iter()
            .map(platform)
            .collect::<Result<_, _>>()?;
        request.load_platform = self.load_platform.as_ref().map(platform).transpose()?;
        request.validate_platforms().map_err(|e| e.to_string())?;
        if let Some(base) = &self.base {
            // A base comes from the builder's engine: a path would read the server's files.
            let base: BaseRef = base.parse().map_err(|e: crate::Error| e.to_string())?;
            if !matches!(
                base,
                BaseRef::Scratch | BaseRef::Engine(_) | BaseRef::Registry(_)
            ) {
                return Err(format!(
                    "invalid base `{base}`: the service takes scratch, an image in its engine or docker://REF"
                ));
            }
            request.bases = vec![base];
        }
        if let Some(tag) = &self.tag {
            request.tag = Some(tag.parse().map_err(|e: crate::Error| e.to_string())?);
        }
        if let Some(cpu) = &request.overrides.target_cpu {
            self.check_cpu(cpu)?;
        }
        request.outputs.push = self.push.clone();
        request.builder = BuilderChoice::Auto;
        request.outputs.load = Load::Never;
        request.cold_start_runs = 0;
        Ok(request)
    }
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

/// Whether a CPU name could be one at all: what is checked when no rustc answers.
fn plausible_cpu(cpu: &str) -> bool {
    (1..=64).contains(&cpu.len())
        && cpu
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Options {
    /// The target triples a build compiles for: the one asked, each platform's, or amd64's.
    fn triples(&self) -> Vec<String> {
        if let Some(target) = &self.target {
            return vec![target.clone()];
        }
        let arches: Vec<String> = match self.platform.is_empty() {
            true => vec!["x86_64".into()],
            false => self
                .platform
                .iter()
                .filter_map(|p| p.parse::<crate::core::platform::Platform>().ok())
                .map(|p| p.rust_arch().to_string())
                .collect(),
        };
        arches
            .iter()
            .map(|a| format!("{a}-unknown-linux-musl"))
            .collect()
    }

    /// A target CPU must be one rustc knows for every triple built (`rustc --print
    /// target-cpus`); without a rustc here, a plausible name.
    fn check_cpu(&self, cpu: &str) -> Result<(), String> {
        if !plausible_cpu(cpu) {
            return Err(format!(
                "invalid target_cpu `{cpu}`; expected a CPU name from `rustc --print target-cpus`"
            ));
        }
        for triple in self.triples() {
            if let Some(cpus) = target_cpus(&triple) {
                if !cpus.iter().any(|c| c == cpu) {
                    return Err(format!(
                        "invalid target_cpu `{cpu}` for {triple}; `rustc --print target-cpus \
                         --target {triple}` lists the valid ones (e.g. {})",
                        cpus.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks what the options make of the uploaded `source` (`.` for a Cargo project, else
    /// its one file's name): a single file's name must go into the generated Cargo.toml and,
    /// without a `tag`, make a valid image name.
    pub fn check_source(&self, source: &str) -> Result<(), String> {
        if source == "." {
            return Ok(());
        }
        if source
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Err(format!(
                "invalid source file name {source:?}: control characters, quotes and \
                 backslashes cannot go into a manifest; rename the file"
            ));
        }
        if self.tag.is_none() {
            let bin = self
                .bin
                .clone()
                .unwrap_or_else(|| crate::pipeline::source::file_bin_name(Path::new(source)));
            for preset in &self.optimize {
                let tag = format!("{bin}:{preset}");
                if let Err(e) = tag.parse::<crate::pipeline::oci::ImageRef>() {
                    return Err(format!(
                        "the image name made from {source:?} is not valid ({e}); pass tag=NAME:TAG"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_checked_when_taken() {
        let options =
            Options::from_query(&query(&[("optimize", "aggressive,size"), ("lto", "thin")]))
                .unwrap();
        assert_eq!(options.optimize, ["aggressive", "size"]);
        let request = options
            .request(Path::new("app.rs"), Path::new("/c"))
            .unwrap();
        assert_eq!(request.presets, [Preset::Aggressive, Preset::Size]);
        assert_eq!(request.overrides.lto, Some(Lto::Thin));
        assert_eq!(
            serde_json::to_value(&options).unwrap(),
            serde_json::json!({"optimize": ["aggressive", "size"], "lto": "thin"})
        );

        let fast = Options::from_query(&query(&[("optimize", "fast")])).unwrap_err();
        assert!(
            fast.contains("none, balanced, aggressive, nasa, size"),
            "{fast}"
        );
        let lto = Options::from_query(&query(&[("lto", "max")])).unwrap_err();
        assert_eq!(lto, "invalid lto `max`; valid: off, thin, fat");
        let unknown = Options::from_query(&query(&[("colour", "red")])).unwrap_err();
        assert!(
            unknown.starts_with("unknown parameter `colour`"),
            "{unknown}"
        );
        let both = Options::from_query(&query(&[
            ("platform", "linux/arm64,linux/amd64"),
            ("load_platform", "linux/arm64"),
        ]))
        .unwrap();
        let request = both.request(Path::new("app.rs"), Path::new("/c")).unwrap();
        assert_eq!(request.platforms.len(), 2);
        assert_eq!(
            serde_json::from_value::<Options>(serde_json::to_value(&both).unwrap()).unwrap(),
            both
        );
        let s390x = Options::from_query(&query(&[("platform", "linux/s390x")])).unwrap_err();
        assert!(
            s390x.contains("expected linux/amd64 or linux/arm64"),
            "{s390x}"
        );
        let twice =
            Options::from_query(&query(&[("platform", "linux/arm64,linux/arm64")])).unwrap_err();
        assert!(twice.contains("listed twice"), "{twice}");
        let path = Options::from_query(&query(&[("base", "oci:/etc")])).unwrap_err();
        assert!(
            path.contains("scratch, an image in its engine or docker://REF"),
            "{path}"
        );
    }
}
