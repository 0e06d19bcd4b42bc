-- Memories and their full-text index (FTS5, BM25), kept in sync by triggers
-- inside the writing transaction.
CREATE TABLE memories (
    seq            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    namespace      TEXT    NOT NULL,
    content        TEXT    NOT NULL,
    summary        TEXT,
    memory_type    TEXT    NOT NULL,
    importance     INTEGER NOT NULL CHECK (importance BETWEEN 1 AND 10),
    tags           TEXT    NOT NULL DEFAULT '',
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    accessed_at_ms INTEGER NOT NULL,
    access_count   INTEGER NOT NULL DEFAULT 0,
    archived       INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1))
);
CREATE INDEX memories_updated ON memories (updated_at_ms);
CREATE INDEX memories_namespace_updated ON memories (namespace, updated_at_ms);
CREATE INDEX memories_importance_updated ON memories (importance, updated_at_ms);

CREATE VIRTUAL TABLE memories_fts USING fts5 (
    content, summary, tags,
    content = 'memories', content_rowid = 'seq',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO memories_fts (memories_fts, rank) VALUES ('rank', 'bm25(1.0, 0.5, 0.5)');

CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, content, summary, tags)
    VALUES (new.seq, new.content, new.summary, new.tags);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, summary, tags)
    VALUES ('delete', old.seq, old.content, old.summary, old.tags);
END;
CREATE TRIGGER memories_fts_update AFTER UPDATE OF content, summary, tags ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, summary, tags)
    VALUES ('delete', old.seq, old.content, old.summary, old.tags);
    INSERT INTO memories_fts (rowid, content, summary, tags)
    VALUES (new.seq, new.content, new.summary, new.tags);
END;
