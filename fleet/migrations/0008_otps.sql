-- Verification codes shared by the fleet: a code sent through the node
-- that hosts the tenant is read, verified and sent again through any
-- node, and the per-phone and per-address limits count every node's
-- sends. Only each code's HMAC is stored (in the record), never the code.
-- Times are Unix milliseconds of the node that wrote them (the times in
-- the record itself). A tenant's rows go with the tenant.
CREATE TABLE otps (
    id         text PRIMARY KEY,
    tenant     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- `OtpRecord` as JSON.
    record     jsonb NOT NULL,
    expires_ms bigint NOT NULL
);
CREATE INDEX otps_by_expiry ON otps (expires_ms);

-- The latest code per tenant and phone: a new one voids it.
CREATE TABLE otp_latest (
    tenant text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    phone  text NOT NULL,
    otp    text NOT NULL,
    PRIMARY KEY (tenant, phone)
);

-- One row per code sent, per scope (`phone:+…`, `addr:…`): what the
-- limits count. Rows out of every window are removed by the next send
-- under their scope.
CREATE TABLE otp_sends (
    id     bigserial PRIMARY KEY,
    scope  text NOT NULL,
    at_ms  bigint NOT NULL,
    -- "otp id/send number"
    send   text NOT NULL,
    tenant text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);
CREATE INDEX otp_sends_by_scope ON otp_sends (scope, at_ms);
