-- Pairing codes asked for, fleet-wide: the hourly limits per phone number
-- and per egress count every node's (antiban.pairing_codes_per_phone_per_hour,
-- pairing_codes_per_egress_per_hour). Times are the database's clock in
-- Unix milliseconds.
CREATE TABLE pairing_codes (
    id      bigserial PRIMARY KEY,
    tenant  text NOT NULL,
    phone   text NOT NULL,
    egress  text NOT NULL,
    at_ms   bigint NOT NULL
);
CREATE INDEX pairing_codes_by_phone ON pairing_codes (phone, at_ms);
CREATE INDEX pairing_codes_by_egress ON pairing_codes (egress, at_ms);
