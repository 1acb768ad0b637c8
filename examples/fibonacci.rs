//! The chapter's benchmark program: fibonacci(N), then who it ran as, so a test can check
//! the container's process is not root.
//!
//! Usage: fibonacci [N]   (default 30)

use std::os::unix::fs::MetadataExt;

fn fibonacci(n: u32) -> u64 {
    if n <= 1 {
        n as u64
    } else {
        fibonacci(n - 1) + fibonacci(n - 2)
    }
}

fn main() {
    let n = match std::env::args().nth(1).map(|a| a.parse::<u32>()) {
        None => 30,
        Some(Ok(n)) if n <= 90 => n,
        Some(_) => {
            eprintln!("usage: fibonacci [N], with N from 0 to 90");
            std::process::exit(2);
        }
    };
    println!("fibonacci({n}) = {}", fibonacci(n));
    // /proc/self is owned by the process's uid and gid: no libc call needed.
    match std::fs::metadata("/proc/self") {
        Ok(meta) => println!("uid={} gid={}", meta.uid(), meta.gid()),
        Err(_) => println!("uid=unknown"),
    }
}
