//! Parsing a command line whose usage errors show what the user typed, not what the
//! environment set.
//!
//! clap counts an option set from its environment variable (`RUCHY_IMAGE_CACHE`,
//! `RUCHY_IMAGE_BUILDER`, ...) as given on the command line, so the usage line of a
//! "required argument missing" error lists it as if it were required:
//! `Usage: ruchy-image build --cache-dir <DIR> <SOURCE>`.

use clap::error::ErrorKind;
use clap::{Command, Parser};

/// Parses the process's arguments into `P` (a program's whole command line, such as one that
/// mounts [`ImageCommand`](super::ImageCommand)), exiting as clap does on help, version or a
/// usage error; a usage error's usage line names only options the user typed.
pub fn parse<P: Parser>() -> P {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = match P::command().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(error) => usage_error(P::command(), error, &args).exit(),
    };
    P::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// `error` again, from the same arguments parsed without any environment variable, when that
/// gives the same kind of error: its usage line then has only what was typed.
fn usage_error(command: Command, error: clap::Error, args: &[std::ffi::OsString]) -> clap::Error {
    if error.kind() != ErrorKind::MissingRequiredArgument {
        return error;
    }
    match without_env(command).try_get_matches_from(args) {
        Err(plain) if plain.kind() == error.kind() => plain,
        _ => error,
    }
}

fn without_env(command: Command) -> Command {
    command
        .mut_args(|arg| arg.env(None::<&str>))
        .mut_subcommands(without_env)
}
