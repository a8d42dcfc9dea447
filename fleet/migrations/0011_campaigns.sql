-- Campaigns follow the tenant: the record (its recipients, its position
-- and counts) is the fleet's, written by the tenant's owner fenced on its
-- lease, and each node's runner steps the running campaigns of the
-- tenants it holds. The campaign's messages are in `messages`, under the
-- idempotency key `campaign/<id>/<index>`.
CREATE TABLE campaigns (
    id      text PRIMARY KEY,
    tenant  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status  text NOT NULL,
    record  jsonb NOT NULL,
    -- The owner's epoch when it was last written.
    epoch   bigint NOT NULL
);
CREATE INDEX campaigns_running ON campaigns (tenant) WHERE status = 'running';
