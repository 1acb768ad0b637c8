//! Assembly alone (layers, config, manifest; no compile, no I/O) for a 1 MiB and a 50 MiB
//! binary, at the presets' gzip levels (6 for none/balanced, 9 for aggressive/nasa, 12 for size),
//! beside the zlib-rs level 9 gzip that layers had before (one stream, one core). The binaries
//! are this benchmark's own executable repeated to size, so they compress like real code does;
//! the compressed sizes are printed once per input.
//!
//! Run: cargo bench --bench assemble

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ruchy_image::pipeline::oci::image::{assemble, ImageSpec, RuntimeUser};

fn binary_of_size(size: usize) -> Vec<u8> {
    let exe = std::fs::read(std::env::current_exe().expect("own path")).expect("own bytes");
    exe.iter().copied().cycle().take(size).collect()
}

fn spec(compression_level: u32) -> ImageSpec {
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
        compression: ruchy_image::pipeline::oci::layer::Codec::Gzip,
        compression_level,
    }
}

/// What layers were compressed with before libdeflate: zlib-rs at level 9, one stream.
fn zlib_9(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(9));
    gz.write_all(data).expect("in memory");
    gz.finish().expect("in memory")
}

fn assembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("assemble");
    group.sample_size(10);
    for mib in [1usize, 50] {
        let binary = binary_of_size(mib << 20);
        let layer = |level| {
            assemble(&binary, &spec(level), None)
                .expect("assembles")
                .layers[1]
                .size()
        };
        eprintln!(
            "{mib} MiB binary: layer bytes zlib-rs 9 {}, libdeflate 6 {}, 9 {}, 12 {}",
            zlib_9(&binary).len(),
            layer(6),
            layer(9),
            layer(12)
        );
        group.throughput(Throughput::Bytes(binary.len() as u64));
        for level in [6, 9, 12] {
            group.bench_with_input(
                BenchmarkId::new(format!("libdeflate-{level}"), format!("{mib}MiB")),
                &binary,
                |b, bin| b.iter(|| assemble(bin, &spec(level), None).expect("assembles")),
            );
        }
        group.bench_with_input(
            BenchmarkId::new("zlib-rs-9-before", format!("{mib}MiB")),
            &binary,
            |b, bin| b.iter(|| zlib_9(bin)),
        );
    }
    group.finish();
}

criterion_group!(benches, assembly);
criterion_main!(benches);
