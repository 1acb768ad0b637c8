-- Workers: every `serve` process that takes builds from this database. With SQLite there is
-- one; with PostgreSQL, any number, each on its own engine and data dir.
CREATE TABLE workers (
    -- Stable per data dir (its `worker-id` file), so a restarted worker knows its own builds.
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- Where the other workers reach its API: images and logs stay on the worker that built them.
    url TEXT NOT NULL,
    -- What it builds with: the engine and builder image, or the local toolchain.
    engine TEXT NOT NULL,
    slots BIGINT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    stopped_at TEXT
);
-- The worker that runs (or ran) the build.
ALTER TABLE builds ADD COLUMN worker TEXT;
-- The uploaded context, by digest, until no queued or working build needs it: any worker can
-- unpack it, not only the one that took the upload.
CREATE TABLE sources (
    digest TEXT PRIMARY KEY,
    body BYTEA NOT NULL
);
CREATE INDEX builds_by_project ON builds (project, seq);
