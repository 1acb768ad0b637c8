//! Progress, as typed events: the only way anything the library has to say leaves it while it
//! works. A shell decides what to do with them: the CLI draws a spinner and prints lines, a
//! service stores them and streams them to whoever watches the build.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::core::preset::{Flags, Preset};

/// A stage of one build, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Source detection, transpiling, the generated Cargo project.
    Prepare,
    /// cargo, on the host or in a builder container.
    Compile,
    /// Layers, config and manifest.
    Assemble,
    /// Writing the image to each output.
    Publish,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Prepare => "prepare",
            Stage::Compile => "compile",
            Stage::Assemble => "assemble",
            Stage::Publish => "publish",
        })
    }
}

/// Something that happened while a request ran.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A stage of a build began.
    StageStarted {
        /// Which.
        stage: Stage,
    },
    /// A stage of a build ended well.
    StageFinished {
        /// Which.
        stage: Stage,
        /// How long it took.
        time_ms: u64,
    },
    /// The compile is about to run with these resolved flags (after
    /// `StageStarted { stage: Compile }`).
    Compiling {
        /// The source, as given.
        source: PathBuf,
        /// The binary target.
        bin: String,
        /// The resolved flags.
        flags: Flags,
        /// The backend (`local`, `docker`).
        builder: String,
    },
    /// A line the compiler printed: cargo's status lines and diagnostics, and the output of
    /// build scripts.
    CompilerOutput {
        /// The line, without its line end; it may hold terminal colours when asked for.
        line: String,
    },
    /// The binary exists.
    Compiled {
        /// Where.
        binary: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// How long the compile took.
        time_ms: u64,
        /// Whether nothing had to be rebuilt.
        fresh: bool,
    },
    /// The image is being assembled under this reference.
    Assembling {
        /// `name:tag`.
        reference: String,
    },
    /// An output is being made visible (a rename, an engine load): from here until
    /// [`Event::Written`], an interruption may leave it written or not.
    Writing {
        /// What and where (`archive out/fib.tar`, `engine fib:aggressive`).
        output: String,
    },
    /// An output is written.
    Written {
        /// What and where.
        output: String,
    },
    /// Progress of an image pull through the engine.
    Pull {
        /// The image.
        image: String,
        /// The engine's status line.
        status: String,
    },
    /// A big blob's upload to a registry: `sent` of `total` bytes are there.
    Upload {
        /// The blob's digest.
        blob: String,
        /// Bytes the registry has taken.
        sent: u64,
        /// The blob's size.
        total: u64,
    },
    /// A step of a longer job outside a build (making a builder image).
    Step {
        /// What is being done.
        message: String,
    },
    /// Something worth knowing that changes nothing.
    Note {
        /// The message.
        message: String,
    },
    /// Something the user may not expect, that does not stop the request.
    Warning {
        /// The message.
        message: String,
    },
    /// A multi-platform build (or comparison) moves on to the next platform.
    PlatformStarted {
        /// `linux/arm64`.
        platform: String,
    },
    /// A comparison moves on to the next base.
    BaseStarted {
        /// The base, as named.
        base: String,
    },
    /// A comparison starts a preset.
    PresetStarted {
        /// 1-based position in the list.
        index: usize,
        /// How many presets there are.
        total: usize,
        /// The preset.
        preset: Preset,
    },
    /// A preset of a comparison failed; the comparison goes on with the next.
    PresetFailed {
        /// The preset.
        preset: Preset,
        /// Why, in full.
        error: String,
    },
}

/// Where events go: a callback shared by everything that runs for one request. Cloning is
/// cheap; all clones feed the same callback.
#[derive(Clone)]
pub struct Events(Arc<dyn Fn(Event) + Send + Sync>);

impl Events {
    /// Sends every event to `sink`.
    pub fn new(sink: impl Fn(Event) + Send + Sync + 'static) -> Events {
        Events(Arc::new(sink))
    }

    /// Drops every event.
    pub fn none() -> Events {
        Events::new(|_| {})
    }

    /// Reports one event.
    pub fn emit(&self, event: Event) {
        (self.0)(event)
    }

    /// Reports a [`Event::Note`].
    pub fn note(&self, message: impl Into<String>) {
        self.emit(Event::Note {
            message: message.into(),
        })
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn clones_feed_one_sink_and_events_serialize_tagged() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let events = Events::new(move |e| sink.lock().unwrap().push(e));
        events.clone().note("hello");
        events.emit(Event::StageFinished {
            stage: Stage::Compile,
            time_ms: 12,
        });
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            serde_json::to_value(&seen[1]).unwrap(),
            serde_json::json!({"event": "stage_finished", "stage": "compile", "time_ms": 12})
        );
    }
}
