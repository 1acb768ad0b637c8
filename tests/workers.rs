//! Several `ruchy-image serve` workers on one PostgreSQL: each claims builds for its own data
//! dir, any worker's API answers for every build (logs from the database, images from the
//! run's artifact registry), and a worker killed mid-build has its build finished by another.

mod common;
mod guards;
mod service;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use service::*;

/// Two workers on one new database, each with a data dir of its own.
fn two_workers(dir: &std::path::Path, timeout: &str) -> (Vec<Server>, Vec<Leftovers>, String) {
    let database = database_for(dir);
    let mut servers = Vec::new();
    let mut guards = Vec::new();
    for name in ["one", "two"] {
        let data = dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        guards.push(Leftovers(data.clone()));
        servers.push(start(
            &data,
            &[
                "--database",
                &database,
                "--worker-name",
                name,
                "--heartbeat-timeout",
                timeout,
            ],
        ));
    }
    (servers, guards, database)
}

/// The worker names `GET /v1/workers` gives by ID, and their states.
fn workers(server: &Server) -> BTreeMap<String, (String, String)> {
    let answer = curl(server, "GET", "/v1/workers", &[], true);
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap().to_string(),
                (
                    w["name"].as_str().unwrap().to_string(),
                    w["state"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn two_workers_share_one_queue_and_each_build_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, _leftovers, _) = two_workers(dir.path(), "30s");
    let known = workers(&servers[0]);
    assert_eq!(known.len(), 2, "{known:?}");
    assert!(
        known.values().all(|(_, state)| state == "alive"),
        "{known:?}"
    );

    // Four projects (a file each), three builds of each, sent to either worker: no-change
    // rebuilds after each project's first.
    let mut ids = Vec::new();
    for round in 0..3 {
        for project in ["alpha", "beta", "gamma", "delta"] {
            let sources = dir.path().join(format!("{project}-{round}"));
            std::fs::create_dir_all(&sources).unwrap();
            std::fs::copy(
                example("fibonacci.rs"),
                sources.join(format!("{project}.rs")),
            )
            .unwrap();
            let context = context_of(&sources);
            let to = &servers[ids.len() % 2];
            let accepted = submit(to, context.path(), "optimize=aggressive");
            ids.push(accepted["id"].as_str().unwrap().to_string());
        }
    }
    let mut built_by: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let done = wait_for(&servers[0], id, Duration::from_secs(300), ended);
        assert_eq!(done["status"], "success", "{done}");
        assert_eq!(done["attempts"], 1, "ran once: {done}");
        let worker = done["worker"].as_str().unwrap().to_string();
        assert!(known.contains_key(&worker), "{done}");
        *built_by.entry(known[&worker].0.clone()).or_default() += 1;
        // Both APIs answer for it, whichever built it: the same log, the same image.
        let mut digests = Vec::new();
        for server in &servers {
            let log = curl(server, "GET", &format!("/v1/builds/{id}/log"), &[], true);
            assert_eq!(log.status, 200, "{}", log.body);
            let starts = log.body.matches(&format!("→ build {id} started")).count();
            assert_eq!(starts, 1, "started once, on {worker}: {}", log.body);
            assert!(
                log.body.contains(&format!("on worker {worker}")),
                "{}",
                log.body
            );
            let image = curl(
                server,
                "GET",
                &format!("/v1/builds/{id}/image"),
                &["-o", "/dev/null"],
                true,
            );
            assert_eq!(image.status, 200, "{}", image.headers);
            let digest = image
                .headers
                .lines()
                .find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("docker-content-digest: ")
                        .map(|d| d.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no digest: {}", image.headers));
            digests.push(digest);
        }
        assert_eq!(digests[0], digests[1]);
        // Followed through the worker that did not build it, to its end.
        let other = servers
            .iter()
            .find(|s| {
                let me = curl(s, "GET", "/v1/workers", &[], true).json();
                !me["workers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w["this"] == true && w["id"] == worker.as_str())
            })
            .unwrap();
        let followed = curl(
            other,
            "GET",
            &format!("/v1/builds/{id}/log?follow=true"),
            &[],
            true,
        );
        assert_eq!(followed.status, 200, "{}", followed.body);
        assert!(
            followed.body.contains("ended: success"),
            "{}",
            followed.body
        );
    }
    assert_eq!(built_by.len(), 2, "both workers built some: {built_by:?}");
    assert_eq!(built_by.values().sum::<usize>(), 12);
}

#[test]
fn a_killed_worker_s_build_is_finished_by_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (mut servers, _leftovers, _) = two_workers(dir.path(), "3s");
    let context = slow_project(&dir.path().join("slow"), "slow", 6);
    let accepted = submit(&servers[0], context.path(), "optimize=aggressive");
    let id = accepted["id"].as_str().unwrap().to_string();
    let working = wait_for(&servers[0], &id, Duration::from_secs(120), |r| {
        r["status"] == "working"
    });
    let first = working["worker"].as_str().unwrap().to_string();
    let known = workers(&servers[0]);
    let victim = servers
        .iter()
        .position(|s| {
            let answer = curl(s, "GET", "/v1/workers", &[], true).json();
            answer["workers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["this"] == true && w["id"] == first.as_str())
        })
        .unwrap();
    // SIGKILL: no drain, no goodbye; its heartbeat stops.
    servers[victim].child.kill().unwrap();
    servers[victim].child.wait().unwrap();
    let survivor = &servers[1 - victim];

    let done = wait_for(survivor, &id, Duration::from_secs(180), ended);
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    let second = done["worker"].as_str().unwrap();
    assert_ne!(second, first, "{done}");
    assert_eq!(known[second].1, "alive");
    let states = workers(survivor);
    assert_eq!(states[&first].1, "silent", "{states:?}");
    let log = curl(survivor, "GET", &format!("/v1/builds/{id}/log"), &[], true);
    assert!(
        log.body.contains("(attempt 2) on worker"),
        "the survivor's log: {}",
        log.body
    );
    // The image is the survivor's; the dead worker's files are not needed.
    let image = curl(
        survivor,
        "GET",
        &format!("/v1/builds/{id}/image"),
        &["-o", "/dev/null"],
        true,
    );
    assert_eq!(image.status, 200, "{}", image.headers);
}
