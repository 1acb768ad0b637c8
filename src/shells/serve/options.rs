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
                    overrides.codegen_units = Some(value.parse().map_err(|_| {
                        format!("invalid codegen_units `{value}`; expected a number")
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
        request.outputs.push = self.push.clone();
        request.builder = BuilderChoice::Auto;
        request.outputs.load = Load::Never;
        request.cold_start_runs = 0;
        Ok(request)
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
