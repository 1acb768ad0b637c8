//! A command line turned into the library's request (`to_lib`): what clap cannot check is
//! checked here, and errors about a value name the flag it came from.

use std::collections::BTreeMap;

use super::args::{BuildArgs, CompareArgs, DockerfileArgs, DockerfileVariant, LambdaArgs};
use super::options::{
    BudgetArgs, BuildOptions, Builder, CompressionArg, FlagArgs, Given, ImageArgs, InputArgs, Pull,
    RegistryArgs, ServiceArgs,
};
use crate::core::budget::{Budget, Budgets, Limit};
use crate::core::preset::{OptLevel, Overrides, Strip};
use crate::pipeline::build::{default_cache_dir, ImageOptions};
use crate::pipeline::compile::PullPolicy;
use crate::pipeline::oci::image::RuntimeUser;
use crate::pipeline::oci::layer::Codec;
use crate::pipeline::plan::settings::{self, Settings, Use};
use crate::pipeline::plan::{BuilderChoice, Load, Request};
use crate::pipeline::source::SourceOptions;
use crate::{Error, Result};

/// What reading one layer of a base may cost on this machine: the library's bounds, with
/// `RUCHY_IMAGE_MAX_LAYER_SIZE` bytes per layer when it is set to a number (anything else
/// is ignored).
pub(super) fn base_limits() -> crate::pipeline::base::Limits {
    let mut limits = crate::pipeline::base::Limits::default();
    if let Some(max) = std::env::var("RUCHY_IMAGE_MAX_LAYER_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        limits.max_layer_bytes = max;
    }
    limits
}

/// The cache volumes' names from `RUCHY_IMAGE_CARGO_VOLUME` and `RUCHY_IMAGE_TARGET_VOLUME`
/// (a test's or a benchmark's own, empty ones), where set.
pub(super) fn cache_volumes() -> crate::pipeline::compile::CacheVolumes {
    let named = |variable| std::env::var(variable).ok().filter(|v| !v.is_empty());
    crate::pipeline::compile::CacheVolumes {
        cargo_home: named("RUCHY_IMAGE_CARGO_VOLUME"),
        targets: named("RUCHY_IMAGE_TARGET_VOLUME"),
    }
}

impl BuildOptions {
    /// The library's request for this source and these flags, shared by every command that
    /// compiles; the caller fills in presets, image, bases and outputs.
    fn request(&self) -> Result<Request> {
        let (input, flags) = (&self.input, &self.flags);
        let mut request = Request::new(&input.source);
        request.source = input.to_lib();
        request.no_embed_deps = input.no_embed_deps;
        request.overrides = flags.to_lib()?;
        request.target = flags.target.clone();
        request.platforms = flags.platform.clone();
        request.load_platform = flags.load_platform;
        request.builder = input.builder_choice();
        request.builder_image = input.builder_image.clone();
        request.pull = input.pull_policy();
        request.sandbox.limits = input.limits.over(crate::pipeline::compile::Limits::CLI);
        request.base_limits = base_limits();
        request.sandbox.volumes = cache_volumes();
        Ok(request)
    }

    /// [`BuildOptions::request`] with what goes into the image: `build` and `compare`.
    fn image_request(&self, image: &ImageArgs) -> Result<Request> {
        let mut request = self.request()?;
        request.image = image.to_lib()?;
        request.bases = vec![image.base.clone()];
        request.source_date_epoch = image.source_date_epoch;
        Ok(request)
    }
}

impl BuildArgs {
    /// The library's request for this command line.
    pub fn to_lib(&self) -> Result<Request> {
        let mut request = self.options.image_request(&self.image)?;
        request.presets = vec![self.optimize];
        request.tag = self.tag.as_deref().map(str::parse).transpose()?;
        request.outputs.oci_layout = self.oci_layout.clone();
        request.outputs.archive = self.output.clone();
        request.outputs.sbom = self.attest.sbom.clone();
        request.outputs.no_sbom = self.attest.no_sbom;
        request.outputs.sbom_format = self.attest.sbom_format.parse()?;
        request.outputs.no_provenance = self.attest.no_provenance;
        request.outputs.sign_key = self.attest.sign_key.clone();
        self.registry.apply(&mut request)?;
        request.outputs.load = load_for(self.load, self.no_load, request.tag.is_some());
        Ok(request)
    }
}

impl BuildArgs {
    /// Takes the project's settings of the command line's own options (what it prints,
    /// where the metrics go, the server to build on) where it gave none, and `allow-root`,
    /// which the command line's `--user` needs before [`BuildArgs::to_lib`] reads it.
    pub fn take_settings(&mut self, settings: &Settings) {
        if !self.given.has("verbose") {
            self.verbose |= settings.flag("verbose");
            self.quiet |= settings.flag("quiet");
        }
        if !self.given.has("json") {
            self.json = settings.path("json").or(self.json.take());
        }
        self.service.take_settings(&self.given, settings);
        self.image.allow_root |= !self.given.has("allow-root") && settings.flag("allow-root");
    }

    /// The library's request for this command line and the project's `settings`: the flags
    /// given win, the settings fill in the rest, and the request says where each came from.
    pub fn resolve(&self, settings: Option<&Settings>) -> Result<Request> {
        let mut request = self.to_lib()?;
        request.budgets = self.budget.to_lib()?;
        settings::record_given(&mut request, self.given.iter());
        settings::resolve(settings, &mut request, Use::Build)?;
        // A tag from the settings means the engine too, as one from the command line does.
        let from_file = |name| !self.given.has(name) && settings.is_some_and(|s| s.flag(name));
        let load = self.load || from_file("load");
        let no_load = self.no_load || from_file("no-load");
        request.outputs.load = load_for(load, no_load, request.tag.is_some());
        Ok(request)
    }
}

/// A tag means "I want it in the engine": loaded when one answers, unless told not to.
fn load_for(load: bool, no_load: bool, tagged: bool) -> Load {
    match (load, no_load, tagged) {
        (true, _, _) => Load::Always,
        (_, true, _) | (_, _, false) => Load::Never,
        _ => Load::IfEngine,
    }
}

impl CompareArgs {
    /// [`BuildArgs::take_settings`] for `compare`.
    pub fn take_settings(&mut self, settings: &Settings) {
        if !self.given.has("verbose") {
            self.verbose |= settings.flag("verbose");
            self.quiet |= settings.flag("quiet");
        }
        self.service.take_settings(&self.given, settings);
        self.image.allow_root |= !self.given.has("allow-root") && settings.flag("allow-root");
    }

    /// [`BuildArgs::resolve`] for `compare` (which has no use for `build`'s outputs).
    pub fn resolve(&self, settings: Option<&Settings>) -> Result<Request> {
        let mut request = self.to_lib()?;
        request.budgets = self.budget.to_lib()?;
        let mut given: Vec<(&str, String)> = self.given.iter().collect();
        // --bases says what the base setting would.
        if let Some((_, from)) = given.iter().find(|(name, _)| *name == "bases") {
            given.push(("base", from.clone()));
        }
        settings::record_given(&mut request, given);
        settings::resolve(settings, &mut request, Use::Compare)?;
        Ok(request)
    }
}

impl ServiceArgs {
    fn take_settings(&mut self, given: &Given, settings: &Settings) {
        if !given.has("server") {
            self.server = settings.text("server").or(self.server.take());
        }
        if !given.has("token-file") {
            self.token_file = settings.path("token-file").or(self.token_file.take());
        }
    }
}

impl CompareArgs {
    /// The library's request: every preset, on every base, loaded as `BIN:PRESET` into the
    /// engine only to time cold starts.
    pub fn to_lib(&self) -> Result<Request> {
        let mut request = self.options.image_request(&self.image)?;
        request.presets = self.presets.clone();
        if !self.bases.is_empty() {
            request.bases = self.bases.clone();
        }
        request.cold_start_runs = self.cold_start_runs;
        self.registry.apply(&mut request)?;
        request.outputs.load = match self.cold_start_runs {
            0 => Load::Never,
            _ => Load::IfEngine,
        };
        Ok(request)
    }
}

impl LambdaArgs {
    /// The library's request for this command line.
    pub fn to_lib(&self) -> Result<Request> {
        // A function runs on one architecture, so there is no image of several to choose from.
        if let Some(platform) = self.options.flags.load_platform {
            return Err(Error::InvalidInput {
                what: "--load-platform",
                value: platform.to_string(),
                reason: "a Lambda function is one platform: choose it with --platform".into(),
            });
        }
        let mut request = self.options.request()?;
        request.source.lambda = true;
        request.presets = vec![self.optimize];
        request.source_date_epoch = self.source_date_epoch;
        request.tag = self.tag.as_deref().map(str::parse).transpose()?;
        request.outputs.oci_layout = self.oci_layout.clone();
        if let Some(base) = &self.base {
            request.bases = vec![base.clone()];
        }
        request.outputs.load = match request.tag.is_some() {
            true => Load::Always,
            false => Load::Never,
        };
        Ok(request)
    }
}

impl DockerfileArgs {
    /// The library's options: the binary is looked up in SOURCE when one is given.
    pub fn to_lib(&self) -> Result<crate::commands::dockerfile::DockerfileOptions> {
        use crate::commands::dockerfile::{project_bin, Cache, DockerfileOptions, Variant};
        let bin = match &self.source {
            Some(source) => Some(project_bin(source, self.bin.as_deref())?),
            None => self.bin.clone(),
        };
        Ok(DockerfileOptions {
            preset: self.optimize,
            bin,
            target: self.target.clone(),
            builder_image: self.builder_image.clone(),
            base: self.base.clone(),
            variant: match self.variant {
                DockerfileVariant::Scratch => Variant::Scratch,
                DockerfileVariant::Alpine => Variant::Alpine,
            },
            cache: match self.buildkit {
                true => Cache::Mounts,
                false => Cache::Layer,
            },
        })
    }
}

impl InputArgs {
    fn to_lib(&self) -> SourceOptions {
        SourceOptions {
            path: self.source.clone(),
            bin: self.bin.clone(),
            ruchy: self.ruchy.clone(),
            cache_dir: self.cache_dir.clone().unwrap_or_else(default_cache_dir),
            lambda: false,
            checkout: None,
        }
    }
}

impl InputArgs {
    /// When to pull the builder image, as the library names it.
    fn pull_policy(&self) -> PullPolicy {
        match self.pull {
            Pull::Missing => PullPolicy::Missing,
            Pull::Always => PullPolicy::Always,
            Pull::Never => PullPolicy::Never,
        }
    }

    /// Where to compile, as the library names it.
    fn builder_choice(&self) -> BuilderChoice {
        match self.builder {
            None => BuilderChoice::Auto,
            Some(Builder::Docker) => BuilderChoice::Docker,
            Some(Builder::Local) => BuilderChoice::Local,
        }
    }
}

impl FlagArgs {
    fn to_lib(&self) -> Result<Overrides> {
        let strip = if self.no_strip {
            Some(Strip::None)
        } else {
            self.strip
        };
        let static_link = match (self.static_link, self.no_static_link) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Ok(Overrides {
            opt_level: self
                .opt_level
                .as_deref()
                .map(str::parse::<OptLevel>)
                .transpose()?,
            lto: self.lto,
            codegen_units: self.codegen_units,
            strip,
            panic: self.panic,
            target_cpu: self.target_cpu.clone(),
            static_link,
        })
    }
}

impl ImageArgs {
    fn to_lib(&self) -> Result<ImageOptions> {
        let user = match &self.user {
            Some(spec) => RuntimeUser::parse(spec, self.allow_root)?,
            None => RuntimeUser::default(),
        };
        let env = self
            .env
            .iter()
            .map(|e| key_value("--env", e).map(|(k, v)| format!("{k}={v}")))
            .collect::<Result<Vec<_>>>()?;
        let labels = self
            .label
            .iter()
            .map(|l| key_value("--label", l))
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(ImageOptions {
            user,
            env,
            ports: self.port.iter().map(|p| port(p)).collect::<Result<_>>()?,
            workdir: absolute_image_path("--workdir", &self.workdir)?,
            labels,
            path: self
                .path
                .as_deref()
                .map(|p| absolute_image_path("--path", p))
                .transpose()?,
            compression: match self.compression {
                CompressionArg::Gzip => Codec::Gzip,
                CompressionArg::Zstd => Codec::Zstd,
            },
            compression_level: self.compression_level,
        })
    }
}

impl BudgetArgs {
    /// The budgets, checked now so a bad size fails before any compile.
    pub fn to_lib(&self) -> Result<Budgets> {
        let parse = |limit, flag, text: &Option<String>| {
            let parse = |text: &str| {
                Budget::parse(limit, text).map_err(|reason| Error::InvalidInput {
                    what: flag,
                    value: text.to_string(),
                    reason,
                })
            };
            text.as_deref().map(parse).transpose()
        };
        Ok(Budgets {
            max_binary: parse(Limit::Binary, "--max-binary-size", &self.max_binary_size)?,
            max_image: parse(Limit::Image, "--max-image-size", &self.max_image_size)?,
        })
    }
}

impl RegistryArgs {
    /// Fills the request's pushes and registry options. The login's password comes from
    /// stdin, which the command's handler reads ([`RegistryArgs::login`]): converting a
    /// command line touches nothing outside it.
    fn apply(&self, request: &mut Request) -> Result<()> {
        request.outputs.push = self.push.clone();
        request.registry.insecure = self.insecure_registry.clone();
        request.registry.ca_files = self.registry_ca.clone();
        Ok(())
    }

    /// The registry login, when `--registry-user` and `--registry-password-stdin` ask for
    /// one, with the password `read_password` gives (its line end dropped).
    pub fn login(
        &self,
        read_password: impl FnOnce() -> Result<String>,
    ) -> Result<Option<(String, String)>> {
        let (Some(user), true) = (&self.registry_user, self.registry_password_stdin) else {
            return Ok(None);
        };
        let password = read_password()?;
        let password = password.trim_end_matches(['\n', '\r']).to_string();
        Ok(Some((user.clone(), password)))
    }
}

fn key_value(what: &'static str, value: &str) -> Result<(String, String)> {
    ImageOptions::key_value(what, value)
}

fn port(value: &str) -> Result<String> {
    ImageOptions::port(value)
}

fn absolute_image_path(what: &'static str, value: &str) -> Result<String> {
    ImageOptions::image_path(what, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::preset::Preset;
    use crate::shells::cli::ImageCommand;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ImageCommand,
    }

    fn parse(args: &[&str]) -> ImageCommand {
        let all = ["ruchy-image"].iter().chain(args);
        Cli::try_parse_from(all).unwrap().command
    }

    #[test]
    fn ports_env_and_paths_are_checked() {
        assert_eq!(port("8080").unwrap(), "8080/tcp");
        assert_eq!(port("53/udp").unwrap(), "53/udp");
        for bad in ["0", "70000", "http", "80/xyz"] {
            assert!(port(bad).is_err(), "{bad}");
        }
        assert!(key_value("--env", "=x").is_err());
        assert_eq!(key_value("--env", "A=b=c").unwrap().1, "b=c");
        assert!(absolute_image_path("--path", "bin/app").is_err());
        assert!(absolute_image_path("--path", "/a/../etc").is_err());
    }

    fn compare_request(args: &[&str]) -> Request {
        let all: Vec<&str> = ["compare", "app.rs"].iter().chain(args).copied().collect();
        match parse(&all) {
            ImageCommand::Compare(args) => args.to_lib().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compare_takes_presets_in_order() {
        let request = compare_request(&[]);
        assert_eq!(request.presets, Preset::ALL);
        assert_eq!(request.tag, None, "each preset gets its own BIN:PRESET tag");
        assert_eq!(request.outputs.load, Load::IfEngine, "for cold starts");
        let request = compare_request(&["--presets", "nasa,none", "--cold-start-runs", "0"]);
        assert_eq!(request.presets, [Preset::Nasa, Preset::None]);
        assert_eq!(request.outputs.load, Load::Never);
        assert_eq!(request.pull, PullPolicy::Missing);
        assert_eq!(
            compare_request(&["--pull", "always"]).pull,
            PullPolicy::Always
        );
        let unknown = Cli::try_parse_from(["ruchy-image", "compare", "a.rs", "--presets", "fast"]);
        assert!(unknown.is_err());
    }

    /// `lambda` shares the build options' conversion: the same source and flags, packaged as
    /// a function.
    #[test]
    fn lambda_takes_the_shared_build_options() {
        let request = |args: &[&str]| {
            let all: Vec<&str> = ["lambda", "h.rs", "-o", "f.zip"]
                .iter()
                .chain(args)
                .copied()
                .collect();
            match parse(&all) {
                ImageCommand::Lambda(args) => args.to_lib().unwrap(),
                other => panic!("{other:?}"),
            }
        };
        let plain = request(&["--bin", "fn", "--lto", "thin", "--builder", "local"]);
        assert!(plain.source.lambda);
        assert_eq!(plain.source.bin.as_deref(), Some("fn"));
        assert_eq!(plain.presets, [Preset::Aggressive]);
        assert_eq!(plain.overrides.lto, Some(crate::core::preset::Lto::Thin));
        assert_eq!(plain.builder, BuilderChoice::Local);
        assert_eq!(plain.outputs.load, Load::Never);
        let image = request(&["--lambda-image", "--tag", "fn:1"]);
        assert_eq!(image.outputs.load, Load::Always);
        let build = match parse(&["build", "h.rs", "--bin", "fn", "--lto", "thin"]) {
            ImageCommand::Build(args) => args.to_lib().unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(!build.source.lambda);
        assert_eq!(build.source.bin, plain.source.bin);
        assert_eq!(build.overrides.lto, plain.overrides.lto);
        let ImageCommand::Lambda(one_of_several) = parse(&[
            "lambda",
            "h.rs",
            "-o",
            "f.zip",
            "--load-platform",
            "linux/arm64",
        ]) else {
            panic!("not lambda")
        };
        let refused = one_of_several.to_lib().unwrap_err().to_string();
        assert!(refused.contains("--load-platform"), "{refused}");
        assert!(refused.contains("choose it with --platform"), "{refused}");
    }

    #[test]
    fn a_tag_loads_when_an_engine_answers() {
        let load = |args: &[&str]| {
            let all: Vec<&str> = ["build", "app.rs"].iter().chain(args).copied().collect();
            match parse(&all) {
                ImageCommand::Build(args) => args.to_lib().unwrap().outputs.load,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(load(&[]), Load::Never);
        assert_eq!(load(&["--tag", "a:1"]), Load::IfEngine);
        assert_eq!(load(&["--tag", "a:1", "--no-load"]), Load::Never);
        assert_eq!(load(&["--load"]), Load::Always);
    }

    #[test]
    fn budgets_are_parsed_for_both_commands() {
        let ImageCommand::Compare(args) = parse(&[
            "compare",
            "a.rs",
            "--max-binary-size",
            "1.5MB",
            "--max-image-size",
            "2KiB",
        ]) else {
            panic!("not compare")
        };
        let budgets = args.budget.to_lib().unwrap();
        assert_eq!(budgets.max_binary.unwrap().bytes, 1_500_000);
        assert_eq!(budgets.max_image.unwrap().bytes, 2048);
        let ImageCommand::Build(args) = parse(&["build", "a.rs", "--max-image-size", "4X"]) else {
            panic!("not build")
        };
        let error = args.budget.to_lib().unwrap_err();
        assert!(error.is_usage());
        assert!(
            error
                .to_string()
                .starts_with("invalid --max-image-size `4X`: unknown unit"),
            "{error}"
        );
    }

    fn build_args(args: &[&str]) -> BuildArgs {
        let all: Vec<&str> = ["build"].iter().chain(args).copied().collect();
        match parse(&all) {
            ImageCommand::Build(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    /// Every long flag of `build` is a setting of the same name and form (true for a flag
    /// without a value, a list for one that repeats), or refused with a reason; the pairs
    /// that contradict each other are clap's; the named values are the flags'.
    #[test]
    fn every_long_flag_of_build_is_a_setting() {
        use crate::pipeline::plan::settings::{find_key, KEYS, PAIRS, REFUSED};
        use clap::{ArgAction, Args, CommandFactory};
        let command = BuildArgs::augment_args(clap::Command::new("build"));
        let mut flags = Vec::new();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert_eq!(
                arg.get_id().as_str().replace('_', "-"),
                long,
                "Given reads ids as names"
            );
            flags.push(long.to_string());
            if REFUSED.iter().any(|(name, _)| *name == long) {
                continue;
            }
            let key = find_key(long).unwrap_or_else(|| panic!("--{long} has no setting"));
            let fits = match arg.get_action() {
                ArgAction::SetTrue => key.is_switch(),
                ArgAction::Append => key.is_list(),
                _ => !key.is_switch() && !key.is_list(),
            };
            assert!(
                fits,
                "--{long} is {:?}, its setting {key:?}",
                arg.get_action()
            );
            for other in command.get_arg_conflicts_with(arg) {
                let other = other.get_long().unwrap();
                let paired = PAIRS
                    .iter()
                    .any(|p| *p == (long, other) || *p == (other, long));
                assert!(
                    paired,
                    "--{long} conflicts with --{other}: a pair of settings"
                );
            }
        }
        for key in KEYS {
            assert!(
                flags.iter().any(|f| f == key.name),
                "{} is no flag",
                key.name
            );
        }
        let mut cli = Cli::command();
        let build = cli.find_subcommand_mut("build").unwrap();
        let values = |name: &str| -> Vec<String> {
            let arg = build
                .get_arguments()
                .find(|a| a.get_long() == Some(name))
                .unwrap();
            arg.get_possible_values()
                .iter()
                .map(|v| v.get_name().to_string())
                .collect()
        };
        use crate::pipeline::plan::settings::{BUILDERS, CODECS, PULLS};
        assert_eq!(values("builder"), BUILDERS);
        assert_eq!(values("pull"), PULLS);
        assert_eq!(values("compression"), CODECS);
    }

    #[test]
    fn the_command_line_says_which_options_it_gave() {
        let args = build_args(&["app.rs", "-O", "size", "--env", "A=b", "--no-load"]);
        let given: Vec<&str> = args.given.0.keys().map(String::as_str).collect();
        assert_eq!(given, ["env", "no-load", "optimize", "source"]);
        assert!(args.given.has("load"), "a pair's flag stands for both");
        assert!(
            !args.given.has("base") && !args.given.has("workdir"),
            "defaults"
        );
        assert_eq!(args.given.0["optimize"], "flag");
    }

    /// The flags given win over the project's settings, the settings over the defaults, and
    /// the request says where each came from.
    #[test]
    fn flags_win_over_settings_and_settings_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("app.rs");
        std::fs::write(&source, "fn main() {}\n").unwrap();
        std::fs::write(
            dir.path().join("ruchy-image.toml"),
            "optimize = \"aggressive\"\nenv = [\"A=file\"]\nport = [\"8080\"]\ntag = \"app:dev\"\nverbose = true\njson = \"metrics.json\"\nallow-root = true\n",
        )
        .unwrap();
        let resolved = |extra: &[&str]| {
            let mut all = vec![source.to_str().unwrap()];
            all.extend(extra);
            let mut args = build_args(&all);
            let settings = Settings::find(&source).unwrap().unwrap();
            args.take_settings(&settings);
            let request = args.resolve(Some(&settings)).unwrap();
            (args, request)
        };
        let (args, request) = resolved(&["--env", "B=flag", "--user", "0"]);
        assert_eq!(request.presets, [Preset::Aggressive]);
        assert_eq!(request.image.env, ["B=flag"]);
        assert_eq!(request.image.ports, ["8080/tcp"]);
        assert_eq!(request.image.user.uid, 0, "allow-root from the file");
        assert_eq!(request.tag.as_ref().unwrap().full, "app:dev");
        assert_eq!(
            request.outputs.load,
            Load::IfEngine,
            "a tag means the engine"
        );
        assert!(args.verbose);
        assert_eq!(args.json, Some(dir.path().join("metrics.json")));
        assert_eq!(request.settings["optimize"], "ruchy-image.toml:1");
        assert_eq!(request.settings["env"], "flag");
        assert_eq!(request.settings["base"], "default");
        let (args, request) = resolved(&["-O", "none", "--quiet", "--no-load", "--json", "-"]);
        assert_eq!(request.presets, [Preset::None]);
        assert_eq!(request.image.env, ["A=file"]);
        assert_eq!(request.outputs.load, Load::Never);
        assert!(
            args.quiet && !args.verbose,
            "--quiet stands for verbose too"
        );
        assert_eq!(args.json.as_deref(), Some(std::path::Path::new("-")));
    }
}
