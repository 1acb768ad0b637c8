//! Where a command's results go: stdout, or a file written atomically. `-` as an output path
//! means stdout, and a summary then goes to stderr so that stdout stays parseable.

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

/// Whether `path` is `-`: stdout.
pub(super) fn is_stdout(path: &Path) -> bool {
    path == Path::new("-")
}

/// The file `path` names, if it is given and not `-`: what to check is writable up front.
pub(super) fn file(path: Option<&Path>) -> Option<&Path> {
    path.filter(|p| !is_stdout(p))
}

/// The build metrics to `path` (or stdout).
pub(super) fn write_json(path: &Path, record: &impl serde::Serialize) -> Result<(), Error> {
    write_json_as(("the build metrics", "the metrics JSON"), path, record)
}

/// `value` as JSON to `path` (or stdout); `what` names it as a value and as a file.
pub(super) fn write_json_as(
    what: (&'static str, &'static str),
    path: &Path,
    value: &impl serde::Serialize,
) -> Result<(), Error> {
    let json = to_json(what.0, value)?;
    if is_stdout(path) {
        return print_stdout(what.0, &json);
    }
    crate::adapters::fsutil::write_file_atomically(what.1, path, &json)
}

/// A command's summary: on stdout, unless its JSON (`json`) goes there.
pub(super) fn print_summary(summary: &str, json: Option<&Path>) {
    match json.is_some_and(is_stdout) {
        true => eprint!("{summary}"),
        false => print!("{summary}"),
    }
}

/// Writes a result to stdout, where a closed pipe is an error worth reporting.
pub(super) fn print_stdout(what: &str, bytes: &[u8]) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|_| stdout.flush())
        .map_err(Error::io(format!("writing {what} to stdout")))
}
