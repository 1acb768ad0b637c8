//! The settings there are: one per long flag of `build`, with the shape of its value, whose it
//! is (the build's, the asking machine's, the shell's), where a request's JSON holds it, and
//! the flags that cannot be settings or contradict each other.

/// How a key's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// A string.
    Text,
    /// A string, or a number written as one (`opt-level = 3`, `max-image-size = 400000`).
    TextOrNumber,
    /// A whole number.
    Number,
    /// `true` (the flag given) or `false` (not given).
    Bool,
    /// A path, relative to the settings file's directory.
    Path,
    /// A list of strings: the flag repeated.
    List,
    /// A list of paths, each relative to the settings file's directory.
    PathList,
}

impl Shape {
    pub(super) fn expected(self, key: &str) -> String {
        match self {
            Shape::Text => format!("a string, such as {key} = \"…\""),
            Shape::TextOrNumber => format!("a string or a number, such as {key} = \"…\""),
            Shape::Number => format!("a whole number, such as {key} = 1"),
            Shape::Bool => format!("true or false, such as {key} = true"),
            Shape::Path => format!("a path, such as {key} = \"…\""),
            Shape::List | Shape::PathList => {
                format!("a list of strings (the flag repeated), such as {key} = [\"…\"]")
            }
        }
    }
}

/// Whose a setting is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// What the build asks for: it travels with the request to a service.
    Build,
    /// The machine's that runs the command: where it compiles, its paths and outputs. A
    /// service ignores these.
    Local,
    /// The command line's own (what it prints, where it sends the build), read by the shell;
    /// not part of the request.
    Shell,
}

/// One setting: a long flag of `build`.
#[derive(Debug)]
pub struct Key {
    /// The flag's long name.
    pub name: &'static str,
    pub(super) shape: Shape,
    /// Whose it is.
    pub scope: Scope,
    /// Where a request's JSON holds it (a JSON pointer), when it travels with it.
    pub(super) json: Option<&'static str>,
    /// Whether a `presets.NAME` table may set it (the per-flag overrides).
    pub(super) per_preset: bool,
}

impl Key {
    /// Whether it takes `true` or `false`: the flag takes no value.
    pub fn is_switch(&self) -> bool {
        self.shape == Bool
    }

    /// Whether it takes a list: the flag repeats.
    pub fn is_list(&self) -> bool {
        matches!(self.shape, List | PathList)
    }
}

const fn key(name: &'static str, shape: Shape, scope: Scope, json: Option<&'static str>) -> Key {
    Key {
        name,
        shape,
        scope,
        json,
        per_preset: false,
    }
}

const fn override_key(name: &'static str, shape: Shape, json: &'static str) -> Key {
    Key {
        name,
        shape,
        scope: Scope::Build,
        json: Some(json),
        per_preset: true,
    }
}

pub(super) use Scope::{Build, Local, Shell};
pub(super) use Shape::{Bool, List, Number, PathList, Text, TextOrNumber};

/// Every setting, in `build --help`'s order. A unit test of the command line holds this
/// table and `build`'s long flags the same.
pub const KEYS: &[Key] = &[
    key("optimize", Text, Build, Some("/presets")),
    key("bin", Text, Build, Some("/source/bin")),
    key("ruchy", Shape::Path, Local, None),
    key("builder", Text, Local, None),
    key("builder-image", Text, Local, None),
    key("pull", Text, Local, None),
    key("cache-dir", Shape::Path, Local, None),
    key("no-embed-deps", Bool, Build, Some("/no_embed_deps")),
    key("build-memory", TextOrNumber, Local, None),
    key("build-pids", Number, Local, None),
    key("build-cpus", TextOrNumber, Local, None),
    key("verbose", Bool, Shell, None),
    key("quiet", Bool, Shell, None),
    override_key("opt-level", TextOrNumber, "/overrides/opt_level"),
    override_key("lto", Text, "/overrides/lto"),
    override_key("codegen-units", Number, "/overrides/codegen_units"),
    override_key("strip", Text, "/overrides/strip"),
    override_key("no-strip", Bool, "/overrides/strip"),
    override_key("panic", Text, "/overrides/panic"),
    override_key("target-cpu", Text, "/overrides/target_cpu"),
    override_key("static-link", Bool, "/overrides/static_link"),
    override_key("no-static-link", Bool, "/overrides/static_link"),
    key("target", Text, Build, Some("/target")),
    key("platform", List, Build, Some("/platforms")),
    key("load-platform", Text, Build, Some("/load_platform")),
    key("base", Text, Build, Some("/bases")),
    key("user", Text, Build, Some("/image/user")),
    key("allow-root", Bool, Build, Some("/image/user")),
    key("env", List, Build, Some("/image/env")),
    key("port", List, Build, Some("/image/ports")),
    key("label", List, Build, Some("/image/labels")),
    key("workdir", Text, Build, Some("/image/workdir")),
    key("path", Text, Build, Some("/image/path")),
    key(
        "source-date-epoch",
        Number,
        Build,
        Some("/source_date_epoch"),
    ),
    key("compression", Text, Build, Some("/image/compression")),
    key(
        "compression-level",
        Number,
        Build,
        Some("/image/compression_level"),
    ),
    key(
        "max-binary-size",
        TextOrNumber,
        Build,
        Some("/budgets/max_binary"),
    ),
    key(
        "max-image-size",
        TextOrNumber,
        Build,
        Some("/budgets/max_image"),
    ),
    key("oci-layout", Shape::Path, Local, None),
    key("output", Shape::Path, Local, None),
    key("tag", Text, Build, Some("/tag")),
    key("load", Bool, Local, None),
    key("no-load", Bool, Local, None),
    key("json", Shape::Path, Shell, None),
    key("push", List, Build, Some("/outputs/push")),
    key("insecure-registry", List, Local, None),
    key("registry-ca", PathList, Local, None),
    key("sbom", Shape::Path, Local, None),
    key("no-sbom", Bool, Build, Some("/outputs/no_sbom")),
    key("sbom-format", Text, Build, Some("/outputs/sbom_format")),
    key("no-provenance", Bool, Build, Some("/outputs/no_provenance")),
    key("sign-key", Shape::Path, Local, None),
    key("server", Text, Shell, None),
    key("token-file", Shape::Path, Shell, None),
];

/// Long flags of `build` that cannot be settings, and why.
pub const REFUSED: &[(&str, &str)] = &[
    (
        "registry-user",
        "a registry login does not belong in the project: log in with `docker login` (its config and credential helpers are read), or give --registry-user on the command line",
    ),
    (
        "registry-password-stdin",
        "a password is read from stdin when asked on the command line, never from a file",
    ),
];

/// Flags that contradict each other (clap's `conflicts_with`): a flag given for one of a pair
/// stands for both, and a file may set only one.
pub const PAIRS: &[(&str, &str)] = &[
    ("strip", "no-strip"),
    ("static-link", "no-static-link"),
    ("load", "no-load"),
    ("sbom", "no-sbom"),
    ("sign-key", "no-provenance"),
    ("verbose", "quiet"),
];

/// Settings of `build` that `compare` has no flag for: it ignores them.
pub const BUILD_ONLY: &[&str] = &[
    "optimize",
    "oci-layout",
    "output",
    "tag",
    "load",
    "no-load",
    "json",
    "sbom",
    "no-sbom",
    "sbom-format",
    "no-provenance",
    "sign-key",
];

/// The other one of a contradicting pair.
pub fn partner(name: &str) -> Option<&'static str> {
    PAIRS.iter().find_map(|(a, b)| match name {
        _ if name == *a => Some(*b),
        _ if name == *b => Some(*a),
        _ => None,
    })
}

/// The setting named `name`.
pub fn find_key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// What the settings are read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// `build`, here.
    Build,
    /// `compare`, here: no settings of `build`'s outputs ([`BUILD_ONLY`]).
    Compare,
    /// A service's build of an upload: only what the build asks for ([`Scope::Build`]).
    Service,
}

impl Use {
    /// Whether a setting applies: others are skipped (`compare`) or ignored (a service).
    pub(super) fn takes(self, key: &Key) -> bool {
        match self {
            Use::Build => key.scope != Shell,
            Use::Compare => key.scope != Shell && !BUILD_ONLY.contains(&key.name),
            Use::Service => key.scope == Build,
        }
    }
}
