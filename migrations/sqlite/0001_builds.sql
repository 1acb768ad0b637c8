-- One row per accepted build, written before the client hears 202.
CREATE TABLE builds (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    -- Builds of one project share its caches: never two at once, and round-robin between projects.
    project TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    -- The request's options as the API took them (JSON).
    options TEXT NOT NULL,
    source_digest TEXT NOT NULL,
    -- What to build inside the build's source directory: "." (a Cargo project) or a file name.
    source_path TEXT NOT NULL,
    -- Stage name -> milliseconds (JSON).
    stages TEXT NOT NULL DEFAULT '{}',
    -- {"message": ..., "stage": ...} on failure (JSON).
    error TEXT,
    -- One `build --json` record per preset, or {"preset", "error"} for one that failed (JSON).
    results TEXT NOT NULL DEFAULT '[]',
    -- Preset -> digest of its image archive in the blob store (JSON).
    images TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX builds_by_status ON builds (status, seq);
