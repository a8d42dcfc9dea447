-- Live events relayed between nodes (every node's /ws shows the whole
-- fleet's): a NOTIFY on centinela_events carries an event itself, and
-- one too large for a notification's payload (8000 bytes) is kept here
-- for the listeners to read, its notification naming the row. Rows are
-- removed after a minute by the node that wrote them.
CREATE TABLE relayed_events (
    id      bigserial PRIMARY KEY,
    node    text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    body    text NOT NULL
);
CREATE INDEX relayed_events_by_at ON relayed_events (at);
