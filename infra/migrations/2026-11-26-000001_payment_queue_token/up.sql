-- A queue token pays once: the first payment that commits ends it, and any other
-- payment with the same token (concurrent or later) fails on this key inside its own
-- transaction, whatever the token's state in Redis said a moment before. The token
-- is a bearer credential, so only its SHA-256 is kept. Payments made before this
-- rule have NULL, which a unique key allows any number of times.
ALTER TABLE payments
    ADD COLUMN queue_token_hash BINARY(32) NULL AFTER amount,
    ADD UNIQUE KEY uq_payments_queue_token (queue_token_hash);
