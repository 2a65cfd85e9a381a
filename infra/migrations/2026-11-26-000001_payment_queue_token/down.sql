ALTER TABLE payments
    DROP INDEX uq_payments_queue_token,
    DROP COLUMN queue_token_hash;
