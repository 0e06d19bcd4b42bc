-- One vector per memory, with the model that made it, as little-endian f32
-- bytes. Each backend keeps its own nearest-neighbour index beside it, per
-- dimension count (sqlite: a sqlite-vec vec0 table; libsql: a vector index),
-- created when the first vector of that size is stored.
CREATE TABLE memory_embeddings (
    memory_seq INTEGER PRIMARY KEY REFERENCES memories (seq) ON DELETE CASCADE,
    model_id   TEXT    NOT NULL,
    dims       INTEGER NOT NULL CHECK (dims > 0),
    vector     BLOB    NOT NULL CHECK (length(vector) = 4 * dims)
);
CREATE INDEX memory_embeddings_model ON memory_embeddings (model_id, memory_seq);
