-- Webhook deliveries follow the tenant: the queue of events for a
-- tenant's receiver is the fleet's, written by the tenant's owner fenced
-- on its lease, and each node delivers the pending deliveries of the
-- tenants it holds; a delivery a node left pending when it stopped is
-- made by the next owner. `record` is the delivery as the single-node
-- store keeps it (JSON).
CREATE TABLE webhook_deliveries (
    id          text PRIMARY KEY,
    tenant      text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status      text NOT NULL,
    next_ms     bigint NOT NULL,
    -- When it finished (its last attempt, or its creation): what the
    -- retention reads; null while pending.
    finished_ms bigint,
    created_ms  bigint NOT NULL,
    record      jsonb NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_ms) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_ms)
    WHERE status <> 'pending';
CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries (tenant, created_ms);
