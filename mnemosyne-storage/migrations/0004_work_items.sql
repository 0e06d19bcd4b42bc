-- Work items of the agents' queue. The columns the queue filters and sorts on
-- are real columns; the whole item (those fields included) is the JSON `body`,
-- which is what is read back.
CREATE TABLE work_items (
    id                  TEXT    PRIMARY KEY,
    state               TEXT    NOT NULL
        CHECK (state IN ('pending', 'claimed', 'done', 'failed', 'cancelled')),
    phase               TEXT    NOT NULL
        CHECK (phase IN ('spec', 'plan', 'implement', 'review', 'done')),
    priority            INTEGER NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    lease_expires_at_ms INTEGER,
    body                TEXT    NOT NULL
);
CREATE INDEX work_items_state_priority ON work_items (state, priority DESC, created_at_ms);
CREATE INDEX work_items_created ON work_items (created_at_ms);
