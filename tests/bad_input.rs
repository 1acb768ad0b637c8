//! Bad input: a clear message, a non-zero exit code, and nothing written.

mod common;

use common::*;

/// Runs a build that must fail with `code` and a message containing `expected`, and checks
/// that the output directory it was given stays empty.
fn fails(args: &[&str], code: i32, expected: &str) -> Run {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let archive = out.path().join("image.tar");
    let mut all: Vec<&str> = vec!["build"];
    all.extend_from_slice(args);
    all.extend([
        "--oci-layout",
        layout.to_str().unwrap(),
        "--output",
        archive.to_str().unwrap(),
    ]);
    let run = ruchy_image(&all);
    assert_eq!(run.code, Some(code), "{args:?}:\n{}", run.stderr);
    assert!(
        run.stderr.contains(expected),
        "{args:?}: expected {expected:?} in:\n{}",
        run.stderr
    );
    assert!(
        entries(out.path()).is_empty(),
        "{args:?} left {:?}",
        entries(out.path())
    );
    run
}

#[test]
fn missing_source() {
    fails(
        &["/no/such/app.rs"],
        2,
        "cannot read source /no/such/app.rs",
    );
}

/// Options set from the environment (as `ruchy_image` sets RUCHY_IMAGE_CACHE and
/// RUCHY_IMAGE_BUILDER) are not typed options: the usage line must not show them as required.
#[test]
fn usage_errors_show_only_typed_options() {
    for command in ["build", "compare", "lambda"] {
        let run = ruchy_image([command, "--verbose"]);
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        let usage = run
            .stderr
            .lines()
            .find(|l| l.starts_with("Usage: "))
            .unwrap_or_else(|| panic!("no usage line in:\n{}", run.stderr));
        assert!(usage.contains("--verbose"), "{usage}");
        for from_env in ["--cache-dir", "--builder", "--cold-start-runs"] {
            assert!(!usage.contains(from_env), "{command}: {usage}");
        }
    }
}

#[test]
fn source_of_unknown_kind() {
    fails(
        &[fixture("serde-app/Cargo.lock").to_str().unwrap()],
        2,
        "expected a Cargo project directory, a .rs file, a .ruchy file or a Linux executable (ELF)",
    );
}

#[test]
fn unknown_preset_lists_the_valid_ones() {
    fails(
        &[&fib(), "--optimize", "fast"],
        2,
        "[possible values: none, balanced, aggressive, nasa, size]",
    );
}

#[test]
fn unknown_flag_values() {
    fails(
        &[&fib(), "--lto", "huge"],
        2,
        "[possible values: off, thin, fat]",
    );
    fails(&[&fib(), "--opt-level", "9"], 2, "invalid value '9'");
    fails(
        &[&fib(), "--port", "http"],
        2,
        "expected a port from 1 to 65535",
    );
}

#[test]
fn compile_error_shows_cargo_diagnostics() {
    let run = fails(
        &[fixture("broken.rs").to_str().unwrap()],
        1,
        "compiling broken failed",
    );
    assert!(
        run.stderr.contains("error[E0308]: mismatched types"),
        "{}",
        run.stderr
    );
    // In the user's file, not the generated project's src/main.rs (the lines match).
    let location = format!(" --> {}:2:18", fixture("broken.rs").display());
    assert!(run.stderr.contains(&location), "{}", run.stderr);
    assert!(!run.stderr.contains("src/main.rs"), "{}", run.stderr);
}

#[test]
fn a_ruchy_compile_error_names_the_ruchy_file_and_its_rust() {
    let source = fixture("broken.ruchy");
    let run = fails(&[source.to_str().unwrap()], 1, "compiling broken failed");
    assert!(run.stderr.contains("error[E0425]"), "{}", run.stderr);
    let note = format!(
        "note: {} compiles as the Rust `ruchy transpile` made of it, ",
        source.display()
    );
    let said = run
        .stderr
        .lines()
        .find(|l| l.starts_with(&note))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    // The Rust is kept where the user can open it, and the locations name it.
    let rust = said[note.len()..].split(": the locations").next().unwrap();
    assert!(std::path::Path::new(rust).is_file(), "{said}");
    assert!(
        run.stderr.contains(&format!(" --> {rust}:")),
        "{}",
        run.stderr
    );
}

#[test]
fn invalid_tag() {
    fails(
        &[&fib(), "--tag", "Fib:latest"],
        2,
        "invalid tag `Fib:latest`",
    );
    fails(&[&fib(), "--tag", "fib:"], 2, "invalid tag `fib:`");
}

#[test]
fn root_or_invalid_user() {
    fails(
        &[&fib(), "--user", "0"],
        2,
        "refusing to run the image as root",
    );
    fails(&[&fib(), "--user", "root:0:0"], 2, "pass --allow-root");
    fails(&[&fib(), "--user", "bob"], 2, "invalid --user `bob`");
}

#[test]
fn output_path_not_writable() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_a_file = file.path().join("image.tar");
    let run = ruchy_image(["build", &fib(), "--output", under_a_file.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot write the image archive")
            && run.stderr.contains("is not a directory"),
        "{}",
        run.stderr
    );
    // Checked before compiling: cargo never ran.
    assert!(!run.stderr.contains("Compiling"), "{}", run.stderr);

    let not_a_layout = tempfile::tempdir().unwrap();
    std::fs::write(not_a_layout.path().join("notes.txt"), "keep me").unwrap();
    let run = ruchy_image([
        "build",
        &fib(),
        "--oci-layout",
        not_a_layout.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("exists and is not an OCI layout"),
        "{}",
        run.stderr
    );
    assert_eq!(entries(not_a_layout.path()), ["notes.txt"]);

    // A directory given for a file, and a file for a layout: the user's paths, exit 2.
    let dir = tempfile::tempdir().unwrap();
    let run = ruchy_image(["build", &fib(), "--output", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("it is a directory; give a file name"),
        "{}",
        run.stderr
    );
    let file = dir.path().join("file");
    std::fs::write(&file, "keep me").unwrap();
    let run = ruchy_image(["build", &fib(), "--oci-layout", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn ruchy_source_without_ruchy() {
    let hint =
        "hint: install it with `cargo install ruchy --locked`, or point to it with --ruchy PATH";
    fails(
        &[
            example("fibonacci.ruchy").to_str().unwrap(),
            "--ruchy",
            "/nonexistent/ruchy",
        ],
        2,
        hint,
    );
    // None on PATH: refused at once (no engine asked, nothing compiled), pointing at doctor.
    let path = tempfile::tempdir().unwrap();
    let run = ruchy_image_with(
        ["build", example("fibonacci.ruchy").to_str().unwrap()],
        |cmd| {
            cmd.env("PATH", path.path())
                .env("DOCKER_HOST", "unix:///nonexistent.sock");
        },
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot run the Ruchy transpiler `ruchy`: not found"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(hint), "{}", run.stderr);
    assert!(
        run.stderr.contains("`ruchy-image doctor`"),
        "{}",
        run.stderr
    );
}

#[test]
fn dynamic_linking_on_scratch_is_refused_before_compiling() {
    let run = fails(
        &[&fib(), "-O", "none", "--no-static-link"],
        2,
        "invalid static linking `--no-static-link`: a dynamically linked binary needs its loader and libraries, which a FROM scratch image does not have",
    );
    assert!(!run.stderr.contains("Compiling"), "{}", run.stderr);
}

#[test]
fn ctrl_c_during_the_compile_leaves_nothing() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let out = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ruchy-image"))
        .args(["build", fixture("slow-build").to_str().unwrap(), "--output"])
        .arg(out.path().join("slow.tar"))
        .env("RUCHY_IMAGE_CACHE", cache_dir())
        .env("RUCHY_IMAGE_BUILDER", "local")
        .env("CARGO_TARGET_DIR", target.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        // Its own process group, like a terminal's foreground job: Ctrl-C signals the group.
        .process_group(0)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("Compiling slow-build v") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "build ended early:\n{seen}"
        );
        seen += &line;
    }
    // Interrupt only once the build script (run from the target dir) is running.
    let script = target.path().join("ruchy-balanced/build");
    let script = script.to_str().unwrap().to_string();
    let processes_in_target = || {
        let ps = tool("ps", &["-eo", "stat=,args="]).ok().stdout;
        ps.lines()
            .filter(|l| l.contains(&script) && l.contains("build-script-build"))
            .filter(|l| !l.starts_with('Z'))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let started = std::time::Instant::now();
    while processes_in_target().is_empty() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the build script never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pgid = child.id().to_string();
    tool("kill", &["-INT", "--", &format!("-{pgid}")]).ok();
    let interrupted = std::time::Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    // The build script sleeps 60 s: exiting well before means it was stopped, not waited for.
    assert!(
        interrupted.elapsed().as_secs() < 30,
        "the interrupted build ran its build script to the end"
    );
    assert!(rest.contains("interrupted: nothing was written"), "{rest}");
    assert!(
        entries(out.path()).is_empty(),
        "left {:?}",
        entries(out.path())
    );
    // The build script went with the build.
    let left = processes_in_target();
    assert!(left.is_empty(), "processes left: {left:?}");
}

#[test]
fn a_timestamp_past_year_9999_is_an_input_error() {
    let out = ruchy_image_with(["build", &fib()], |cmd| {
        cmd.env("SOURCE_DATE_EPOCH", "253402300800");
    });
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "invalid --source-date-epoch (SOURCE_DATE_EPOCH) `253402300800`: expected seconds since 1970 up to 253402300799"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn the_binary_path_must_name_a_file() {
    for path in ["/", "/usr/local/bin/"] {
        fails(
            &[&fib(), "--path", path],
            2,
            &format!("invalid --path `{path}`: expected the absolute path of a file in the image"),
        );
    }
}

#[test]
fn a_bare_user_name_asks_for_its_ids() {
    fails(
        &[&fib(), "--user", "root"],
        2,
        "invalid --user `root`: a name needs its ids, as NAME:UID:GID (such as root:0:0)",
    );
}

#[test]
fn a_base_that_is_not_an_archive_is_never_echoed() {
    let run = fails(
        &[&fib(), "--base", "docker-archive:/etc/passwd"],
        2,
        "cannot find base image docker-archive:/etc/passwd: not a tar archive",
    );
    assert!(!run.stderr.contains("root:x:0"), "{}", run.stderr);
}

#[test]
fn outputs_never_overwrite_the_source_or_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("fib2.rs");
    std::fs::copy(example("fibonacci.rs"), &source).unwrap();
    let before = std::fs::read(&source).unwrap();
    let src = source.to_str().unwrap();
    let clobber = ruchy_image(["build", src, "--output", src]);
    assert_eq!(clobber.code, Some(2), "{}", clobber.stderr);
    assert!(
        clobber
            .stderr
            .contains(&format!("invalid --output `{src}`: it is the source")),
        "{}",
        clobber.stderr
    );
    let holder = dir.path().to_str().unwrap();
    let holds = ruchy_image(["build", src, "--oci-layout", holder]);
    assert_eq!(holds.code, Some(2), "{}", holds.stderr);
    assert!(
        holds.stderr.contains("it holds the source"),
        "{}",
        holds.stderr
    );

    let same = dir.path().join("out");
    let twice = ruchy_image([
        "build",
        src,
        "--oci-layout",
        same.to_str().unwrap(),
        "--output",
        same.to_str().unwrap(),
    ]);
    assert_eq!(twice.code, Some(2), "{}", twice.stderr);
    assert!(
        twice.stderr.contains("is already an output of this build"),
        "{}",
        twice.stderr
    );
    assert_eq!(
        std::fs::read(&source).unwrap(),
        before,
        "the source changed"
    );
    assert_eq!(entries(dir.path()), ["fib2.rs"], "something was written");
}

#[test]
fn bad_file_manifests_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unclosed.rs",
            "---\n[dependencies]\nfn main() {}\n",
            "unclosed.rs:1`: the frontmatter opened here is never closed",
        ),
        (
            "toml.rs",
            "#!/usr/bin/env cargo\n---\n[dependencies]\nserde_json = \n---\nfn main() {}\n",
            "toml.rs:4`",
        ),
        (
            "bin.rs",
            "---\n[[bin]]\nname = \"x\"\n---\nfn main() {}\n",
            "`bin` is not allowed in a single file's manifest",
        ),
        (
            "workspace.rs",
            "//! ```cargo\n//! [workspace]\n//! ```\nfn main() {}\n",
            "`workspace` is not allowed in a single file's manifest",
        ),
        (
            "path.rs",
            "---\n[dependencies]\nmine = { path = \"no-such-dir\" }\n---\nfn main() {}\n",
            "no-such-dir has no Cargo.toml",
        ),
    ];
    // A path dependency whose own path dependency is outside the file's directory, and not
    // named by the file, would not go to the builder.
    for (dir_name, manifest) in [
        ("relay", "[dependencies]\nfar = { path = \"../../far\" }\n"),
        ("far", ""),
    ] {
        let crate_dir = match dir_name {
            "relay" => dir.path().join("app").join(dir_name),
            _ => dir.path().join(dir_name),
        };
        std::fs::create_dir_all(crate_dir.join("src")).unwrap();
        let package = format!("[package]\nname = \"{dir_name}\"\nversion = \"0.1.0\"\n");
        std::fs::write(crate_dir.join("Cargo.toml"), package + manifest).unwrap();
        std::fs::write(crate_dir.join("src/lib.rs"), "").unwrap();
    }
    let cases = cases.into_iter().chain([(
        "app/outside.rs",
        "---\n[dependencies]\nrelay = { path = \"relay\" }\n---\nfn main() {}\n",
        "is outside outside.rs's directory and not among the paths outside.rs names",
    )]);
    let projects = cache_dir().join("projects");
    for (name, code, expected) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, code).unwrap();
        fails(&[file.to_str().unwrap()], 2, expected);
        // Nothing generated in the cache for a file whose manifest was refused.
        let stem = name.trim_start_matches("app/").trim_end_matches(".rs");
        let left: Vec<String> = entries(&projects)
            .into_iter()
            .filter(|e| e.starts_with(&format!("{stem}-")))
            .collect();
        assert!(left.is_empty(), "{name} left {left:?}");
    }
}

#[test]
fn builder_limits_out_of_range() {
    let fib = example("fibonacci.rs");
    let fib = fib.to_str().unwrap();
    fails(&[fib, "--build-memory", "1MB"], 2, "at least 64MiB");
    fails(&[fib, "--build-memory", "lots"], 2, "--build-memory");
    fails(&[fib, "--build-pids", "8"], 2, "--build-pids");
    fails(&[fib, "--build-cpus", "0"], 2, "a number of CPUs");
}

/// A project's settings that cannot be used stop the build before anything runs (exit 2),
/// with the file, line and column: an unknown key, a value of the wrong type, a value its
/// flag refuses, a flag that cannot be a setting, and a contradiction with the base.
#[test]
fn bad_settings_name_their_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("src/main.rs"), "fn main() {}\n").unwrap();
    let package =
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\n\n[package.metadata.ruchy-image]\n";
    let cargo_cases = [
        (
            "optimise = \"size\"\n",
            "Cargo.toml:6:1: unknown setting `optimise`: did you mean `optimize`?",
        ),
        (
            "port = 8080\n",
            "Cargo.toml:6:8: `port` takes a list of strings (the flag repeated), such as port = [\"…\"], not integer",
        ),
        (
            "env = [\"GREETING=hi\", \"=oops\"]\n",
            "Cargo.toml:6:23: invalid env `=oops`: expected KEY=VALUE",
        ),
        (
            "registry-password-stdin = true\n",
            "Cargo.toml:6:1: `registry-password-stdin` cannot be a setting",
        ),
        (
            "no-static-link = true\n",
            "Cargo.toml:6:18: invalid static linking `--no-static-link`",
        ),
    ];
    for (settings, expected) in cargo_cases {
        std::fs::write(project.join("Cargo.toml"), format!("{package}{settings}")).unwrap();
        fails(&[project.to_str().unwrap()], 2, expected);
    }
    // Beside a single file; a bad value is refused even where a flag overrides it.
    let source = dir.path().join("app.rs");
    std::fs::write(&source, "fn main() {}\n").unwrap();
    std::fs::write(
        dir.path().join("ruchy-image.toml"),
        "\noptimize = \"fast\"\n",
    )
    .unwrap();
    fails(
        &[source.to_str().unwrap()],
        2,
        "ruchy-image.toml:2:12: invalid preset `fast`: valid presets are none, balanced, aggressive, nasa, size",
    );
    std::fs::write(dir.path().join("ruchy-image.toml"), "lto = \"max\"\n").unwrap();
    fails(
        &[source.to_str().unwrap(), "--lto", "thin"],
        2,
        "ruchy-image.toml:1:7: invalid lto `max`: valid: off, thin, fat",
    );
}
