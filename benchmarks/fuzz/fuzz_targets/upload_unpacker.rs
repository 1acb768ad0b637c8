//! The service's upload unpacker takes tars from clients: whatever they hold (links through
//! links, `..`, odd names, manifests naming paths), it must refuse or unpack, never panic, and
//! never leave anything outside its directory: every link it keeps resolves inside.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ruchy_image::shells::serve::upload::{resolve_inside, unpack};

fuzz_target!(|data: &[u8]| {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("upload");
    let outside_before = std::fs::read_dir(scratch.path()).unwrap().count();
    match unpack(data, &root, 1 << 20) {
        Ok(_) => {
            // Every link kept leads inside the upload.
            let mut todo = vec![std::path::PathBuf::new()];
            while let Some(dir) = todo.pop() {
                for entry in std::fs::read_dir(root.join(&dir)).unwrap().flatten() {
                    let relative = dir.join(entry.file_name());
                    let kind = entry.file_type().unwrap();
                    if kind.is_symlink() {
                        assert!(resolve_inside(&root, &relative).is_some(), "{relative:?}");
                    } else if kind.is_dir() {
                        todo.push(relative);
                    }
                }
            }
        }
        // A refused upload leaves nothing.
        Err(_) => assert!(!root.exists()),
    }
    // Nothing was written beside it.
    let outside_after = std::fs::read_dir(scratch.path()).unwrap().count();
    assert!(outside_after <= outside_before + 1);
});
