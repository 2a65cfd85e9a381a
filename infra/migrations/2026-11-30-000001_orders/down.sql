ALTER TABLE concert_sales DROP COLUMN refunded, DROP COLUMN cancellations;
ALTER TABLE point_ledger DROP KEY uq_point_ledger_one_refund, DROP COLUMN refund_marker;
DELETE FROM point_ledger WHERE kind IN ('REFUND', 'FEE');
ALTER TABLE point_ledger
    DROP CONSTRAINT ck_point_ledger_kind,
    ADD CONSTRAINT ck_point_ledger_kind CHECK (kind IN ('CHARGE', 'PAYMENT')),
    DROP COLUMN order_id;
ALTER TABLE payments DROP FOREIGN KEY fk_payments_order, DROP KEY uq_payments_order, DROP COLUMN order_id;
UPDATE reservations SET status = 'RELEASED' WHERE status = 'CANCELLED';
ALTER TABLE reservations
    DROP FOREIGN KEY fk_reservations_order,
    DROP COLUMN order_id,
    DROP COLUMN grade,
    DROP CONSTRAINT ck_reservations_status,
    ADD CONSTRAINT ck_reservations_status CHECK (status IN ('HELD', 'CONFIRMED', 'RELEASED', 'EXPIRED'));
DROP TABLE orders;
ALTER TABLE concerts DROP CONSTRAINT ck_concerts_fee,
    DROP COLUMN cancellation_fee_percent, DROP COLUMN cancellation_cutoff_hours;
DROP INDEX ix_schedules_status ON schedules;
ALTER TABLE schedules DROP CONSTRAINT ck_schedules_status, DROP COLUMN status;
DROP INDEX ix_seats_grade ON seats;
ALTER TABLE seats DROP COLUMN grade;
DROP TABLE seat_grades;
