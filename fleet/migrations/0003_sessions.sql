-- Session records shared by the fleet: any node reads them, only the
-- tenant's owner writes them (fenced on its lease), and a new owner finds
-- the sessions it must restore here. `record` is the session record as
-- the single-node store keeps it (JSON).
CREATE TABLE sessions (
    id      text PRIMARY KEY,
    tenant  text NOT NULL,
    record  jsonb NOT NULL,
    -- The owner's epoch when it was last written.
    epoch   bigint NOT NULL
);
CREATE INDEX sessions_by_tenant ON sessions (tenant);
