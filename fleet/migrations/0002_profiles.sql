-- Each session's browser profile (the WhatsApp Web pairing), packed and
-- sealed by the node that owns its tenant, so the tenant's next owner can
-- restore it before it launches Chromium. Written and deleted only under
-- the tenant's fence; `epoch` is the writer's lease epoch, and a write at
-- a lower epoch never replaces one at a higher.
CREATE TABLE profile_snapshots (
    -- Session ids are unique across tenants (as the session records and
    -- `profiles/<session>` directories are keyed).
    session  text PRIMARY KEY,
    tenant   text NOT NULL,
    epoch    bigint NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    -- The packed profile before sealing: its length and SHA-256.
    size     bigint NOT NULL CHECK (size >= 0),
    sha256   bytea NOT NULL CHECK (length(sha256) = 32),
    -- `SecretBox::seal_bytes` of the packed profile, bound to
    -- "profile\0<tenant>\0<session>".
    sealed   bytea NOT NULL
);
CREATE INDEX profile_snapshots_by_tenant ON profile_snapshots (tenant);
