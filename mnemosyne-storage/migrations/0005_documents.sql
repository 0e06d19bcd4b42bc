-- Context documents (mnemosyne-ics). The metadata are columns; `snapshot`
-- holds the Automerge bytes written at the last compaction, and each save
-- since appends one incremental chunk to `document_chunks` (at most about
-- crdt_compact_every_ops of them: compaction folds them into a new snapshot).
-- `state` is the document layer's small JSON state; `document_undo` its
-- undo and redo steps, one row each (bounded by crdt_undo_depth,
-- crdt_actors_max and crdt_undo_bytes_max), so an edit writes one step, not all;
-- `document_log` its attribution records, newest kept, capped at
-- crdt_attribution_records_max per document.
CREATE TABLE documents (
    name                 TEXT    PRIMARY KEY,
    namespace            TEXT    NOT NULL,
    title                TEXT    NOT NULL,
    epoch                INTEGER NOT NULL,
    revision             INTEGER NOT NULL,
    ops_since_compaction INTEGER NOT NULL,
    text_bytes           INTEGER NOT NULL,
    created_at_ms        INTEGER NOT NULL,
    updated_at_ms        INTEGER NOT NULL,
    compacted_at_ms      INTEGER NOT NULL,
    snapshot             BLOB    NOT NULL,
    state                TEXT    NOT NULL
);
CREATE INDEX documents_namespace ON documents (namespace, name);
CREATE TABLE document_chunks (
    name  TEXT    NOT NULL REFERENCES documents (name) ON DELETE CASCADE,
    seq   INTEGER NOT NULL,
    bytes BLOB    NOT NULL,
    PRIMARY KEY (name, seq)
);
CREATE TABLE document_log (
    name   TEXT    NOT NULL REFERENCES documents (name) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    record TEXT    NOT NULL,
    PRIMARY KEY (name, seq)
);
CREATE TABLE document_undo (
    name  TEXT    NOT NULL REFERENCES documents (name) ON DELETE CASCADE,
    seq   INTEGER NOT NULL,
    actor TEXT    NOT NULL,
    redo  INTEGER NOT NULL CHECK (redo IN (0, 1)),
    step  TEXT    NOT NULL,
    PRIMARY KEY (name, seq)
);
