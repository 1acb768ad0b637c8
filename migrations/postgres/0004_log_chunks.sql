-- A build's log as it runs, in pieces of lines, so any worker's API reads (and follows) it
-- while the build runs on another, and it outlives the worker that wrote it. A build run a
-- second time (its worker died) keeps both attempts' pieces, in order.
CREATE TABLE log_chunks (
    build TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (build, attempt, seq)
);
