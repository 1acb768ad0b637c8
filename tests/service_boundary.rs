//! The service's boundary (issue #39), against the real `ruchy-image serve` on loopback: what a
//! hostile client holding a valid token sends is refused at acceptance (400, naming what is
//! wrong, recording nothing, reading nothing of the host), and builds never share or delete
//! each other's directories.

mod common;
mod guards;
#[macro_use]
mod service;

use std::path::Path;

use common::*;
use service::*;

on_both_backends!(
    what_leads_out_of_the_upload_is_refused_and_reads_nothing_of_the_host,
    what_can_be_checked_is_checked_at_acceptance,
);

/// A raw tar of `entries` (name, kind, data, link target), written without the tar crate's
/// checks so hostile names and links can be made.
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            header.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// POSTs `body` (a file written under `dir`) with `query`.
fn post(server: &Server, dir: &Path, query: &str, body: &[u8]) -> Answer {
    let file = tempfile::NamedTempFile::new_in(dir).unwrap();
    std::fs::write(file.path(), body).unwrap();
    curl(
        server,
        "POST",
        &format!("/v1/builds?{query}"),
        &["--data-binary", &format!("@{}", file.path().display())],
        true,
    )
}

/// Asserts a 400 whose JSON error contains `expected` and names no path of the server's.
fn refused(answer: &Answer, data: &Path, expected: &str) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    let error = answer.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains(expected), "{error}");
    let data = std::fs::canonicalize(data).unwrap();
    assert!(!error.contains(&*data.to_string_lossy()), "{error}");
}

fn what_leads_out_of_the_upload_is_refused_and_reads_nothing_of_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);

    // A host directory with a Cargo.toml (another project's, a checkout on the worker).
    let canary = format!("canary-{}", std::process::id());
    let host = dir.path().join("host-crate");
    std::fs::create_dir_all(host.join("src")).unwrap();
    std::fs::write(
        host.join("Cargo.toml"),
        "[package]\nname = \"secretcrate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        host.join("src/lib.rs"),
        format!("pub const SECRET: &str = \"{canary}\";\n"),
    )
    .unwrap();
    let host = std::fs::canonicalize(&host).unwrap();
    let file = format!(
        "---\n[dependencies]\nsecret = {{ path = \"{}\" }}\n---\nfn main() {{ println!(\"{{}}\", secret::SECRET); }}\n",
        host.display()
    );
    let answer = post(
        &server,
        dir.path(),
        "",
        &raw_tar(&[("app.rs", tar::EntryType::Regular, file.as_bytes(), None)]),
    );
    refused(&answer, &data, "`dependencies.secret.path");
    assert!(!answer.body.contains(&canary));
    // The same directory reached with `..` from the upload.
    let climbing = "---\n[dependencies]\nsecret = { path = \"../../../../../../../../../../../../tmp\" }\n---\nfn main() {}\n";
    let answer = post(
        &server,
        dir.path(),
        "",
        &raw_tar(&[("app.rs", tar::EntryType::Regular, climbing.as_bytes(), None)]),
    );
    refused(&answer, &data, "`dependencies.secret.path");
    // A Cargo project whose member names one outside.
    let member = format!(
        "[package]\nname = \"inner\"\nversion = \"0.1.0\"\n[build-dependencies]\nsecret = {{ path = \"{}\" }}\n",
        host.display()
    );
    let answer = post(
        &server,
        dir.path(),
        "",
        &raw_tar(&[
            (
                "Cargo.toml",
                tar::EntryType::Regular,
                b"[workspace]\nmembers = [\"inner\"]\n",
                None,
            ),
            (
                "inner/Cargo.toml",
                tar::EntryType::Regular,
                member.as_bytes(),
                None,
            ),
        ]),
    );
    refused(&answer, &data, "`build-dependencies.secret.path = \"");
    assert!(
        answer.body.contains("in inner/Cargo.toml"),
        "{}",
        answer.body
    );

    // The chain of links that each stay inside and together climb out to the host's files.
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let mut chain: Vec<(String, tar::EntryType, Option<String>)> = vec![
        ("a".into(), tar::EntryType::Directory, None),
        ("a/l".into(), tar::EntryType::Symlink, Some("..".into())),
        ("a/l/up1".into(), tar::EntryType::Symlink, Some("..".into())),
    ];
    for k in 2..=8 {
        let link = format!("up{}/..", k - 1);
        chain.push((format!("a/l/up{k}"), tar::EntryType::Symlink, Some(link)));
    }
    chain.push((
        "Cargo.toml".into(),
        tar::EntryType::Symlink,
        Some("a/l/up8/etc/hostname".into()),
    ));
    let entries: Vec<(&str, tar::EntryType, &[u8], Option<&str>)> = chain
        .iter()
        .map(|(n, k, l)| (n.as_str(), *k, &b""[..], l.as_deref()))
        .collect();
    let answer = post(&server, dir.path(), "", &raw_tar(&entries));
    refused(&answer, &data, "leads outside the build context");
    if !hostname.trim().is_empty() {
        assert!(!answer.body.contains(hostname.trim()), "{}", answer.body);
    }

    // Nothing was recorded, nothing is left unpacked, nothing of the host is anywhere.
    let list = curl(&server, "GET", "/v1/builds", &[], true);
    assert_eq!(
        list.json()["builds"],
        serde_json::json!([]),
        "{}",
        list.body
    );
    assert_eq!(std::fs::read_dir(data.join("sources")).unwrap().count(), 0);
    let store = tool("grep", &["-r", "-l", &canary, data.to_str().unwrap()]);
    assert!(store.stdout.trim().is_empty(), "{}", store.stdout);
}

fn what_can_be_checked_is_checked_at_acceptance() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);
    let fib = std::fs::read(example("fibonacci.rs")).unwrap();
    let one = |name: &str| raw_tar(&[(name, tar::EntryType::Regular, &fib, None)]);

    for (query, expected) in [
        ("target=garbage", "invalid target `garbage`"),
        (
            "target=riscv64gc-unknown-linux-gnu",
            "the builder has: x86_64",
        ),
        ("codegen_units=0", "expected a number of 1 or more"),
        ("codegen_units=-1", "expected a number of 1 or more"),
        ("target_cpu=not-a-cpu", "invalid target_cpu `not-a-cpu`"),
        ("target_cpu=%24%28id%29", "invalid target_cpu"),
        (
            "platform=linux/arm64&target_cpu=x86-64-v3",
            "invalid target_cpu `x86-64-v3` for aarch64",
        ),
    ] {
        let answer = post(&server, dir.path(), query, &one("app.rs"));
        refused(&answer, &data, expected);
    }
    // A name whose image name is not valid, and one that cannot go into a manifest.
    let answer = post(&server, dir.path(), "", &one("a   b.rs"));
    refused(&answer, &data, "pass tag=NAME:TAG");
    let answer = post(&server, dir.path(), "", &one("a\nb.rs"));
    refused(&answer, &data, "control characters");
    // A CPU rustc knows is taken; so is the odd name with a tag of its own.
    let answer = post(&server, dir.path(), "target_cpu=x86-64-v2", &one("app.rs"));
    assert_eq!(answer.status, 202, "{}", answer.body);
    let answer = post(&server, dir.path(), "tag=ab:1", &one("a   b.rs"));
    assert_eq!(answer.status, 202, "{}", answer.body);
    // Cancelled: the test is about acceptance, not the builds.
    let list = curl(&server, "GET", "/v1/builds", &[], true).json();
    for build in list["builds"].as_array().unwrap() {
        let id = build["id"].as_str().unwrap();
        curl(
            &server,
            "POST",
            &format!("/v1/builds/{id}/cancel"),
            &[],
            true,
        );
    }
}
