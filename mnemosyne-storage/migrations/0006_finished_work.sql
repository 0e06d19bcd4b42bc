-- Finished work items by the time they finished (a finished item never
-- changes again): what pruning past work_finished_stored_max walks, newest
-- first, and counts.
CREATE INDEX work_items_finished ON work_items (updated_at_ms, id)
    WHERE state IN ('done', 'failed', 'cancelled');
