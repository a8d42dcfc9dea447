-- A tenant an operator moves to another node (POST /api/v1/fleet/tenants/
-- {id}/move): its owner gives it up at its next round like on a drain (its
-- browsers closed, its profiles stored, its lease released), and until
-- `move_until` only `move_to` may claim it; after that any node may (the
-- target never came). A claim clears both.
ALTER TABLE tenant_owners
    ADD COLUMN move_to    text REFERENCES nodes (id) ON DELETE SET NULL,
    ADD COLUMN move_until timestamptz;
