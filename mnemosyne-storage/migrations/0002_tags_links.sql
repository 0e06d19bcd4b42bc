-- Tags as rows (for filtering) and typed links between memories.
CREATE TABLE memory_tags (
    tag        TEXT    NOT NULL,
    memory_seq INTEGER NOT NULL REFERENCES memories (seq) ON DELETE CASCADE,
    PRIMARY KEY (tag, memory_seq)
) WITHOUT ROWID;
CREATE INDEX memory_tags_memory ON memory_tags (memory_seq);

-- Databases from version 1 kept tags only as space-separated text.
WITH RECURSIVE split (memory_seq, tag, rest) AS (
    SELECT seq, '', tags || ' ' FROM memories
    UNION ALL
    SELECT memory_seq, substr(rest, 1, instr(rest, ' ') - 1), substr(rest, instr(rest, ' ') + 1)
    FROM split WHERE rest <> ''
)
INSERT OR IGNORE INTO memory_tags (tag, memory_seq)
SELECT tag, memory_seq FROM split WHERE tag <> '';

CREATE TABLE memory_links (
    source_id     TEXT    NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    target_id     TEXT    NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    link_type     TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (source_id, target_id, link_type)
) WITHOUT ROWID;
CREATE INDEX memory_links_target ON memory_links (target_id);
