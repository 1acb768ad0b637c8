-- An uploaded context in pieces of at most a MiB, in order, so that neither keeping nor
-- unpacking one holds it whole in memory. `sources` keeps one row per digest (its body empty
-- for contexts kept this way) for the queue's bookkeeping.
CREATE TABLE source_chunks (
    digest TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (digest, seq)
);
