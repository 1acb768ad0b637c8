//! The builder image: found by reference (`rust:1-alpine` by default, pulled when missing)
//! or, on a machine that cannot pull, the newest one `builder import-host` made; and what its
//! toolchain has (rustc, targets, every std and its stamp), found once by a probe run in it
//! and remembered by image ID.

use std::path::Path;

use crate::adapters::c_toolchain::BUILD_SCRIPT_TOOLS;
use crate::adapters::engine::{ContainerSpec, Engine, ImageInfo};
use crate::adapters::stdlib::Stamp;
use crate::core::error::{Error, Result};
use crate::core::event::Events;
use crate::core::preset::StdVariant;

/// The builder image used when none is given: musl, so binaries are static already.
pub const DEFAULT_BUILDER_IMAGE: &str = "rust:1-alpine";

/// Label marking images made by import-host; its value is the inputs' fingerprint.
pub const FINGERPRINT_LABEL: &str = "dev.ruchy.image.builder.fingerprint";

/// When the builder image is pulled, as `docker run --pull` says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Only when the engine lacks it (and, for the default image, has none made by
    /// `builder import-host` either).
    #[default]
    Missing,
    /// Before every build: a failed pull fails the build, the engine's copy is not used.
    Always,
    /// Never: a builder image the engine lacks fails the build.
    Never,
}

/// A builder image present in the engine, with what we need to know about it.
#[derive(Debug, Clone)]
pub struct BuilderImage {
    /// The reference it was found by.
    pub reference: String,
    /// Its image ID.
    pub id: String,
    /// The target triple its toolchain builds for by default.
    pub target: String,
    /// What its toolchain is and has, found once by running it.
    pub toolchain: ImageToolchain,
}

/// A builder image's toolchain, as a probe run in it found it: `rustc -vV`, the targets
/// rustc knows, and every std in the image (its sysroot's, and those `builder import-host`
/// put beside it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ImageToolchain {
    /// `rustc -vV`.
    pub rustc: String,
    /// `rustc --print sysroot`.
    pub sysroot: String,
    /// The standard libraries found.
    pub stds: Vec<ImageStd>,
    /// `rustc --print target-list`.
    pub targets: Vec<String>,
    /// The C compiler that made a static C program for the default musl target and ran it
    /// (what cc-rs takes there: `CC_<target>` from the image's environment, else `cc` where
    /// musl is native), or why none did.
    pub c_compiler: std::result::Result<String, String>,
    /// The programs C build systems run ([`BUILD_SCRIPT_TOOLS`]) that the image lacks.
    pub missing_tools: Vec<String>,
}

impl Default for ImageToolchain {
    fn default() -> ImageToolchain {
        ImageToolchain {
            rustc: String::new(),
            sysroot: String::new(),
            stds: Vec::new(),
            targets: Vec::new(),
            c_compiler: Err("not probed".into()),
            missing_tools: Vec::new(),
        }
    }
}

/// One standard library in a builder image.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ImageStd {
    /// The sysroot it is in.
    pub sysroot: String,
    /// Its target.
    pub target: String,
    /// The stamp of a std ruchy-image built; none for the toolchain's own.
    pub stamp: Option<Stamp>,
}

impl ImageStd {
    fn variant(&self) -> StdVariant {
        self.stamp
            .as_ref()
            .map(|s| s.variant)
            .unwrap_or(StdVariant::Unwind)
    }
}

/// Lists what [`ImageToolchain`] holds, in lines `key=value`, then the target list. Only
/// the shell's own features and `rustc` are assumed: the C probe finds out what else is there.
const PROBE: &str = r#"version=$(rustc -vV) || exit 97
echo "$version"
root=$(rustc --print sysroot) || exit 97
nl='
'
host=${version##*host: }; host=${host%%"$nl"*}
case "$host" in *-linux-gnu) musl=${host%-gnu}-musl ;; *) musl=$host ;; esac
for tool in TOOLS; do command -v "$tool" >/dev/null 2>&1 || echo "missing-tool=$tool"; done
underscored=$(echo "$musl" | tr - _ 2>/dev/null) || underscored=
cc=
[ -n "$underscored" ] && eval "cc=\${CC_$underscored:-}"
[ -n "$cc" ] || { [ "$musl" = "$host" ] && cc=cc; } || cc=${musl%%-*}-linux-musl-gcc
printf 'int main(void) { return 0; }\n' > /tmp/ruchy-image-probe.c 2>/dev/null
if "$cc" -static -o /tmp/ruchy-image-probe /tmp/ruchy-image-probe.c >/tmp/ruchy-image-probe.log 2>&1 && /tmp/ruchy-image-probe; then
  echo "c=$cc"
else
  echo "c-failed=$cc for $musl: $(head -c 200 /tmp/ruchy-image-probe.log 2>/dev/null | tr '\n' ' ')"
fi
echo "sysroot=$root"
for lib in "$root"/lib/rustlib/*/lib /usr/local/lib/ruchy-image/std/*/lib/rustlib/*/lib; do
  set -- "$lib"/libstd-*.rlib
  [ -e "$1" ] || continue
  echo "std=$lib"
  if [ -f "$lib/../ruchy-image-std.json" ]; then printf 'stamp=%s\n' "$(tr -d '\n' < "$lib/../ruchy-image-std.json")"; fi
done
echo "targets:"
rustc --print target-list || exit 97
echo "end"
"#;

impl ImageToolchain {
    fn parse(output: &str) -> ImageToolchain {
        let mut toolchain = ImageToolchain::default();
        let mut lines = output.lines();
        let mut verbose = Vec::new();
        for line in lines.by_ref() {
            if let Some(root) = line.strip_prefix("sysroot=") {
                toolchain.sysroot = root.to_string();
            } else if let Some(lib) = line.strip_prefix("std=") {
                // <sysroot>/lib/rustlib/<target>/lib
                let parts: Vec<&str> = lib.rsplitn(5, '/').collect();
                if let [_, target, _, _, sysroot] = parts[..] {
                    toolchain.stds.push(ImageStd {
                        sysroot: sysroot.to_string(),
                        target: target.to_string(),
                        stamp: None,
                    });
                }
            } else if let Some(tool) = line.strip_prefix("missing-tool=") {
                toolchain.missing_tools.push(tool.to_string());
            } else if let Some(cc) = line.strip_prefix("c=") {
                toolchain.c_compiler = Ok(cc.to_string());
            } else if let Some(why) = line.strip_prefix("c-failed=") {
                toolchain.c_compiler = Err(why.trim().to_string());
            } else if let Some(stamp) = line.strip_prefix("stamp=") {
                if let Some(last) = toolchain.stds.last_mut() {
                    last.stamp = serde_json::from_str(stamp).ok();
                }
            } else if line == "targets:" {
                break;
            } else if toolchain.sysroot.is_empty() {
                verbose.push(line);
            }
        }
        toolchain.rustc = verbose.join("\n");
        toolchain.targets = lines
            .take_while(|l| *l != PROBE_END)
            .map(str::to_string)
            .collect();
        toolchain
    }

    /// The first line of `rustc -vV`.
    pub fn version(&self) -> &str {
        self.rustc.lines().next().unwrap_or_default()
    }

    /// The std for (`target`, `variant`), if the image has one.
    pub fn std_for(&self, target: &str, variant: StdVariant) -> Option<&ImageStd> {
        self.stds
            .iter()
            .find(|s| s.target == target && s.variant() == variant)
    }
}

impl BuilderImage {
    /// Finds the builder image: `requested` (pulled with progress when missing); else
    /// `rust:1-alpine` when the engine has it, else an image made by `builder import-host`
    /// when there is one (no pull is tried: on a machine that made one, the pull fails or
    /// was not wanted), else `rust:1-alpine`, pulled.
    pub async fn resolve(
        engine: &Engine,
        requested: Option<&str>,
        cache_dir: &Path,
        events: &Events,
    ) -> Result<BuilderImage> {
        BuilderImage::resolve_with(engine, requested, PullPolicy::Missing, cache_dir, events).await
    }

    /// [`BuilderImage::resolve`], pulling as `pull` says: `Always` pulls `requested` (or
    /// `rust:1-alpine`) first and fails when that fails; `Never` fails where a pull would be
    /// needed.
    pub async fn resolve_with(
        engine: &Engine,
        requested: Option<&str>,
        pull: PullPolicy,
        cache_dir: &Path,
        events: &Events,
    ) -> Result<BuilderImage> {
        let reference = requested.unwrap_or(DEFAULT_BUILDER_IMAGE).to_string();
        let fetched = |reference: String| async move {
            match pull {
                PullPolicy::Never => Err(Error::BuilderImageMissing { image: reference }),
                _ => pulled(engine, reference, events).await,
            }
        };
        if pull == PullPolicy::Always {
            let (reference, inspect) = fetched(reference).await?;
            return BuilderImage::probed(engine, reference, &inspect, cache_dir).await;
        }
        let (reference, inspect) = match engine.inspect_image(&reference).await {
            Ok(Some(inspect)) => (reference, inspect),
            Ok(None) | Err(_) => match requested {
                None => match imported_builder(engine).await? {
                    Some((tag, inspect)) => {
                        events.note(format!(
                            "using {tag}, made by `builder import-host` ({reference} is not in the engine; `docker pull {reference}` to build with it instead)"
                        ));
                        (tag, inspect)
                    }
                    None => fetched(reference).await?,
                },
                Some(_) => fetched(reference).await?,
            },
        };
        BuilderImage::probed(engine, reference, &inspect, cache_dir).await
    }

    /// The builder image a build would use, if the engine has it now: `requested`, else
    /// `rust:1-alpine`, else one made by `builder import-host`. Nothing is pulled (`doctor`
    /// asks what is here, not what a build could fetch).
    pub async fn find(
        engine: &Engine,
        requested: Option<&str>,
        cache_dir: &Path,
    ) -> Result<Option<BuilderImage>> {
        let reference = requested.unwrap_or(DEFAULT_BUILDER_IMAGE).to_string();
        let found = match engine.inspect_image(&reference).await {
            Ok(Some(inspect)) => Some((reference, inspect)),
            Ok(None) | Err(_) if requested.is_none() => imported_builder(engine).await?,
            Ok(None) | Err(_) => None,
        };
        match found {
            Some((reference, inspect)) => Ok(Some(
                BuilderImage::probed(engine, reference, &inspect, cache_dir).await?,
            )),
            None => Ok(None),
        }
    }

    async fn probed(
        engine: &Engine,
        reference: String,
        inspect: &ImageInfo,
        cache_dir: &Path,
    ) -> Result<BuilderImage> {
        let id = inspect.id.clone();
        let toolchain = probe(engine, &reference, &id, cache_dir).await?;
        let target = crate::adapters::toolchain::field(&toolchain.rustc, "host:");
        Ok(BuilderImage {
            reference,
            id,
            target,
            toolchain,
        })
    }
}

/// `reference` pulled into the engine, and inspected.
async fn pulled(
    engine: &Engine,
    reference: String,
    events: &Events,
) -> Result<(String, ImageInfo)> {
    if let Err(reason) = engine.pull(&reference, events).await {
        return Err(Error::BuilderImageUnavailable {
            image: reference,
            reason,
        });
    }
    let inspect = engine
        .image(&reference, &format!("inspecting {reference}"))
        .await?;
    Ok((reference, inspect))
}

/// The newest image made by `builder import-host`, if any.
async fn imported_builder(engine: &Engine) -> Result<Option<(String, ImageInfo)>> {
    let mut images = engine.images_with_label(FINGERPRINT_LABEL).await?;
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    // Images built FROM a builder carry its label too: the ones import-host named itself
    // come first.
    let tags: Vec<String> = images
        .into_iter()
        .flat_map(|i| i.tags)
        .filter(|t| t != "<none>:<none>")
        .collect();
    // Podman names them `localhost/ruchy-image-builder:...`.
    let Some(tag) = tags
        .iter()
        .find(|t| {
            t.trim_start_matches("localhost/")
                .starts_with("ruchy-image-builder:")
        })
        .or(tags.first())
        .cloned()
    else {
        return Ok(None);
    };
    let inspect = engine.image(&tag, &format!("inspecting {tag}")).await?;
    Ok(Some((tag, inspect)))
}

/// Changes when [`PROBE`] finds out more, so what an older probe remembered is not taken.
const PROBE_VERSION: &str = "d";
/// [`PROBE`]'s last line: output without it was cut short (a log stream can end before the
/// container's last lines), and is neither taken nor remembered.
const PROBE_END: &str = "end";
/// How many times a probe whose output was cut short is run.
const PROBE_TRIES: usize = 3;

/// Runs [`PROBE`] in the image once, then remembers what it found by image ID.
async fn probe(
    engine: &Engine,
    reference: &str,
    image_id: &str,
    cache_dir: &Path,
) -> Result<ImageToolchain> {
    let remembered = cache_dir.join("builders").join(format!(
        "{}.{PROBE_VERSION}.json",
        image_id.replace(':', "-")
    ));
    if let Some(known) = std::fs::read(&remembered)
        .ok()
        .and_then(|json| serde_json::from_slice::<ImageToolchain>(&json).ok())
    {
        return Ok(known);
    }
    let mut tries = 0;
    let toolchain = loop {
        tries += 1;
        let (mut toolchain, complete) = probe_once(engine, reference, image_id).await?;
        if complete {
            break toolchain;
        }
        if tries == PROBE_TRIES {
            // No target list is no check: rustc itself says what it does not know.
            toolchain.targets.clear();
            return Ok(toolchain);
        }
    };
    if let Some(parent) = remembered.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Ok(json) = serde_json::to_vec(&toolchain) {
        let _ = crate::adapters::fsutil::write_file_atomically(
            "the probe's findings",
            &remembered,
            &json,
        );
    }
    Ok(toolchain)
}

/// One run of [`PROBE`] in the image: what it found, and whether its output was whole.
async fn probe_once(
    engine: &Engine,
    reference: &str,
    image_id: &str,
) -> Result<(ImageToolchain, bool)> {
    let id = engine
        .create(ContainerSpec {
            image: image_id.to_string(),
            entrypoint: Some(vec![
                "sh".into(),
                "-c".into(),
                PROBE.replace("TOOLS", &BUILD_SCRIPT_TOOLS.join(" ")),
            ]),
            cmd: Some(vec![]),
            ..Default::default()
        })
        .await?;
    let mut output = String::new();
    let finished = engine
        .run_to_completion(&id, &mut |stderr, line| {
            if !stderr {
                output.push_str(line);
                output.push('\n');
            }
        })
        .await;
    let removed = engine.remove_container(&id).await;
    let not_rust = |reason: String| Error::BuilderNotRust {
        image: reference.to_string(),
        reason,
    };
    let toolchain = ImageToolchain::parse(&output);
    match Error::with_cleanup(finished, removed) {
        Ok(finished) if finished.exit_code == 0 && toolchain.rustc.contains("host: ") => {}
        Ok(finished) => return Err(not_rust(format!("exit code {}", finished.exit_code))),
        // The engine's message says the program is missing; a cleanup error stays an error.
        Err(Error::Engine { message, .. }) => return Err(not_rust(message)),
        Err(other) => return Err(other),
    }
    let complete = output.lines().last() == Some(PROBE_END);
    Ok((toolchain, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_output_names_every_std_and_its_stamp() {
        let output = "rustc 1.96.0 (ac68faa20 2026-05-25)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\n\
missing-tool=cmake\n\
c=musl-gcc\n\
sysroot=/usr\n\
std=/usr/lib/rustlib/x86_64-unknown-linux-gnu/lib\n\
std=/usr/lib/rustlib/x86_64-unknown-linux-musl/lib\n\
stamp={\"rustc\":\"rustc 1.96.0\\nhost: x86_64-unknown-linux-gnu\",\"target\":\"x86_64-unknown-linux-musl\",\"variant\":\"unwind\"}\n\
std=/usr/local/lib/ruchy-image/std/x86_64-unknown-linux-musl-immediate-abort/lib/rustlib/x86_64-unknown-linux-musl/lib\n\
stamp={\"rustc\":\"rustc 1.96.0\",\"target\":\"x86_64-unknown-linux-musl\",\"variant\":\"immediate-abort\"}\n\
targets:\nx86_64-unknown-linux-gnu\nx86_64-unknown-linux-musl\nend\n";
        let toolchain = ImageToolchain::parse(output);
        assert_eq!(toolchain.version(), "rustc 1.96.0 (ac68faa20 2026-05-25)");
        assert!(toolchain.rustc.contains("host: x86_64-unknown-linux-gnu"));
        assert_eq!(toolchain.sysroot, "/usr");
        assert_eq!(toolchain.targets.len(), 2);
        assert_eq!(toolchain.missing_tools, ["cmake"]);
        assert_eq!(toolchain.c_compiler.as_deref(), Ok("musl-gcc"));
        let gnu = toolchain
            .std_for("x86_64-unknown-linux-gnu", StdVariant::Unwind)
            .unwrap();
        assert!(gnu.stamp.is_none());
        let musl = toolchain
            .std_for("x86_64-unknown-linux-musl", StdVariant::Unwind)
            .unwrap();
        assert_eq!(musl.sysroot, "/usr");
        assert!(musl.stamp.is_some());
        let size = toolchain
            .std_for("x86_64-unknown-linux-musl", StdVariant::ImmediateAbort)
            .unwrap();
        assert_eq!(
            size.sysroot,
            "/usr/local/lib/ruchy-image/std/x86_64-unknown-linux-musl-immediate-abort"
        );
        assert!(toolchain
            .std_for("aarch64-unknown-linux-musl", StdVariant::Unwind)
            .is_none());
    }
}
