-- Each tenant's settings the HTTP handlers write: its webhook target and
-- its auto-reply rules. This is their truth in a fleet; the node that
-- hosts the tenant keeps a copy in its own store (where deliveries and
-- replies read them), made again whenever a node starts hosting it. A
-- tenant's rows go with the tenant.
CREATE TABLE tenant_settings (
    tenant     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- webhook | auto_replies
    kind       text NOT NULL CHECK (kind IN ('webhook', 'auto_replies')),
    -- webhook: the target as JSON, sealed (AES-256-GCM under
    -- storage.secret_key, bound to the tenant): it holds the signing
    -- secret. auto_replies: the rules as JSON.
    value      bytea NOT NULL,
    -- The node that wrote it, and when (the database's clock).
    node       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, kind)
);
