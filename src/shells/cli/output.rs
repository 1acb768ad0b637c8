//! Where a command's results go: stdout, or a file written atomically.

use std::io::Write;
use std::path::Path;

use crate::core::error::Error;

/// Pretty JSON with a final newline.
pub(super) fn to_json(what: &'static str, value: &impl serde::Serialize) -> Result<Vec<u8>, Error> {
    let mut json =
        serde_json::to_vec_pretty(value).map_err(|source| Error::Json { what, source })?;
    json.push(b'\n');
    Ok(json)
}

pub(super) fn write_json(path: &Path, record: &impl serde::Serialize) -> Result<(), Error> {
    let json = to_json("the build metrics", record)?;
    if path == Path::new("-") {
        return print_stdout("the metrics", &json);
    }
    crate::adapters::fsutil::write_file_atomically("the metrics JSON", path, &json)
}

/// Writes a result to stdout, where a closed pipe is an error worth reporting.
pub(super) fn print_stdout(what: &str, bytes: &[u8]) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|_| stdout.flush())
        .map_err(Error::io(format!("writing {what} to stdout")))
}
