//! Assembly alone (layers, config, manifest; no compile, no I/O) for a 1 MiB and a 50 MiB
//! binary. The binaries are this benchmark's own executable repeated to size, so they
//! compress like real code does.
//!
//! Run: cargo bench --bench assemble

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ruchy_image::oci::image::{assemble, ImageSpec, RuntimeUser};

fn binary_of_size(size: usize) -> Vec<u8> {
    let exe = std::fs::read(std::env::current_exe().expect("own path")).expect("own bytes");
    exe.iter().copied().cycle().take(size).collect()
}

fn spec() -> ImageSpec {
    ImageSpec {
        binary_path: "/usr/local/bin/app".into(),
        user: RuntimeUser::default(),
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
        ports: vec![],
        workdir: "/".into(),
        labels: BTreeMap::from([("dev.ruchy.image.preset".into(), "aggressive".into())]),
        annotations: BTreeMap::new(),
        created: 0,
        architecture: "amd64".into(),
        created_by: "bench".into(),
        compression_level: 12,
    }
}

fn assembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("assemble");
    group.sample_size(10);
    for mib in [1usize, 50] {
        let binary = binary_of_size(mib << 20);
        group.throughput(Throughput::Bytes(binary.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{mib}MiB")),
            &binary,
            |b, bin| b.iter(|| assemble(bin, &spec(), None).expect("assembles")),
        );
    }
    group.finish();
}

criterion_group!(benches, assembly);
criterion_main!(benches);
