//! The base layer reader takes bytes from images we did not make: whatever they are, it must
//! return an error or a filesystem view, never panic, hang or exhaust memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ruchy_image::pipeline::base::fs::{BaseFs, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_layer_bytes: 16 << 20,
        max_ratio: 1024,
        ratio_floor: 1 << 20,
    };
    let mut fs = BaseFs::default();
    // Two layers: the second sees whiteouts and links over the first.
    let (a, b) = data.split_at(data.len() / 2);
    if fs.apply_layer(0, a, &limits).is_ok() {
        let _ = fs.apply_layer(1, b, &limits);
    }
    for path in ["/etc/passwd", "/lib64/ld-linux-x86-64.so.2", "/a/b/../c", "/"] {
        let _ = fs.exists(path);
        let _ = fs.account_file(path);
    }
});
