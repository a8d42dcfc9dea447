-- Messages follow the tenant: the outbox and message history, the inbox,
-- the contacts (the new-contact budget) and the activity counts (the ban
-- risk) of every session, shared by the fleet instead of kept in the
-- hosting node's store. The owner writes them fenced on its lease, so a
-- new owner finds the queue where the old one left it and sends what is
-- due, and the budget spent on one node is spent on every node. `record`
-- is the record as the single-node store keeps it (JSON); the other
-- columns are what the queries select and order by.
CREATE TABLE messages (
    id              text PRIMARY KEY,
    tenant          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    session         text NOT NULL,
    -- Acceptance order: the send queue's.
    place           bigserial NOT NULL,
    -- Still in the send queue (queued, deferred or sending).
    queued          boolean NOT NULL,
    status          text NOT NULL,
    send_at_ms      bigint,
    created_ms      bigint NOT NULL,
    updated_ms      bigint NOT NULL,
    idempotency_key text,
    engine_id       text,
    record          jsonb NOT NULL
);
CREATE UNIQUE INDEX messages_by_key ON messages (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_queue ON messages (session, place) WHERE queued;
CREATE INDEX messages_history ON messages (session, created_ms, id COLLATE "C");
CREATE INDEX messages_by_engine_id ON messages (session, engine_id)
    WHERE engine_id IS NOT NULL;
CREATE INDEX messages_finished ON messages (created_ms) WHERE NOT queued;

CREATE TABLE inbox (
    session text NOT NULL,
    seq     bigint NOT NULL,
    id      text NOT NULL,
    tenant  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    record  jsonb NOT NULL,
    PRIMARY KEY (session, seq),
    UNIQUE (session, id)
);

-- The first exchange of a session with a peer.
CREATE TABLE contacts (
    session    text NOT NULL,
    peer       text NOT NULL,
    tenant     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at_ms      bigint NOT NULL,
    outgoing   boolean NOT NULL,
    replied_ms bigint,
    PRIMARY KEY (session, peer)
);
CREATE INDEX contacts_new ON contacts (session, at_ms) WHERE outgoing;

-- Per session and hour (start, in ms).
CREATE TABLE activity (
    session         text NOT NULL,
    hour_ms         bigint NOT NULL,
    tenant          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    sent            bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    not_on_whatsapp bigint NOT NULL DEFAULT 0,
    deferred        bigint NOT NULL DEFAULT 0,
    received        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (session, hour_ms)
);
