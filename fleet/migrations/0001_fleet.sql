-- Fleet mode's first schema: the nodes, who owns each tenant, and the
-- fleet-wide admission ledger. Every time that decides something (a lease,
-- an attempt's place in a window) is the database's clock, never a node's.

-- One row per node of the fleet; a node registers itself at start and
-- heartbeats while it runs.
CREATE TABLE nodes (
    id            text PRIMARY KEY,
    advertise_url text NOT NULL,
    -- The network path the node's direct sessions leave through: the
    -- hourly attempt budget is per egress, so nodes behind one address
    -- share one.
    egress        text NOT NULL,
    -- Tenants this node owns at most.
    capacity      integer NOT NULL CHECK (capacity >= 0),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

-- Who owns each tenant. `epoch` grows on every change of hands, so a write
-- fenced on (tenant, epoch) by a node that lost the tenant matches nothing.
-- A tenant with no owner, or whose lease ran out, is an orphan.
CREATE TABLE tenant_owners (
    tenant      text PRIMARY KEY,
    owner       text REFERENCES nodes (id),
    epoch       bigint NOT NULL DEFAULT 0,
    lease_until timestamptz,
    CHECK ((owner IS NULL) = (lease_until IS NULL))
);
CREATE INDEX tenant_owners_by_owner ON tenant_owners (owner);

-- Admitted connection attempts. Times are the database's clock in Unix
-- milliseconds (the `Timestamp` of the in-memory ledger).
CREATE TABLE admission_attempts (
    id           bigserial PRIMARY KEY,
    tenant       text NOT NULL,
    session      text NOT NULL,
    egress       text NOT NULL,
    -- connect | restore | crash_restart | reconnect
    kind         text NOT NULL,
    -- Whether it spends the hourly (per egress) and daily (per tenant) budgets.
    counted      boolean NOT NULL,
    -- A Cloud API connect (its own hourly cap per tenant).
    cloud        boolean NOT NULL,
    at_ms        bigint NOT NULL,
    -- Set when a queued attempt was cancelled: its budget is refunded.
    cancelled_ms bigint
);
CREATE INDEX admission_attempts_by_egress ON admission_attempts (egress, at_ms);
CREATE INDEX admission_attempts_by_tenant ON admission_attempts (tenant, at_ms);

-- Everything else that decides admission and follows the tenant to any
-- node: failures (cooldowns), bans (blocks), proxy holds, admin overrides.
-- `payload` is the ledger event itself (`LedgerEvent` as JSON).
CREATE TABLE admission_events (
    id      bigserial PRIMARY KEY,
    tenant  text NOT NULL,
    -- failure | banned | proxy_blocked | unblocked | cooldown_reset
    kind    text NOT NULL,
    at_ms   bigint NOT NULL,
    payload jsonb NOT NULL
);
CREATE INDEX admission_events_by_tenant ON admission_events (tenant, id);
