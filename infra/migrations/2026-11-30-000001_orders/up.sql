-- Orders: several seats of one schedule held, paid and cancelled together; seat
-- grades with their prices; cancellation with a refund, and cancelled shows.

-- A schedule's seats are divided into grades (VIP, R, S...), each a range of seat
-- numbers with one price. A seat's own row keeps its grade and current price.
CREATE TABLE seat_grades (
    schedule_id  BIGINT UNSIGNED NOT NULL,
    grade        VARCHAR(32)     NOT NULL,
    price        BIGINT UNSIGNED NOT NULL,
    first_seat   INT UNSIGNED    NOT NULL,
    last_seat    INT UNSIGNED    NOT NULL,
    PRIMARY KEY (schedule_id, grade),
    CONSTRAINT fk_seat_grades_schedule FOREIGN KEY (schedule_id) REFERENCES schedules (id),
    CONSTRAINT ck_seat_grades_range CHECK (first_seat >= 1 AND first_seat <= last_seat)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

ALTER TABLE seats ADD COLUMN grade VARCHAR(32) NOT NULL DEFAULT 'STANDARD';
-- "The lowest-numbered free seats of grade G" reads this index in seat order.
CREATE INDEX ix_seats_grade ON seats (schedule_id, grade, seat_no);

-- Schedules created before grades are one grade; its listed price is its lowest.
INSERT INTO seat_grades (schedule_id, grade, price, first_seat, last_seat)
SELECT sc.id, 'STANDARD', COALESCE(MIN(s.price), 0), 1, sc.seat_count
FROM schedules sc LEFT JOIN seats s ON s.schedule_id = sc.id
GROUP BY sc.id, sc.seat_count;

-- A cancelled show: no more holds; its orders are released or refunded in full.
ALTER TABLE schedules
    ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'ON_SALE',
    ADD CONSTRAINT ck_schedules_status CHECK (status IN ('ON_SALE', 'CANCELLED'));
CREATE INDEX ix_schedules_status ON schedules (status);

-- How a fan may cancel a paid order: until cutoff_hours before the show, for a fee.
ALTER TABLE concerts
    ADD COLUMN cancellation_cutoff_hours INT UNSIGNED NOT NULL DEFAULT 24,
    ADD COLUMN cancellation_fee_percent TINYINT UNSIGNED NOT NULL DEFAULT 10,
    ADD CONSTRAINT ck_concerts_fee CHECK (cancellation_fee_percent <= 100);

-- One order per hold: its seats are the reservations that name it. Status lives here
-- and is mirrored on its reservations (whose unique key keeps one sale per seat).
CREATE TABLE orders (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id       VARCHAR(64)     NOT NULL,
    concert_id    BIGINT UNSIGNED NOT NULL,
    schedule_id   BIGINT UNSIGNED NOT NULL,
    status        VARCHAR(16)     NOT NULL,
    seat_count    INT UNSIGNED    NOT NULL,
    total         BIGINT UNSIGNED NOT NULL,
    held_until    DATETIME(6)     NOT NULL,
    refund        BIGINT UNSIGNED NULL,
    fee           BIGINT UNSIGNED NULL,
    cancel_reason VARCHAR(16)     NULL,
    cancelled_at  DATETIME(6)     NULL,
    created_at    DATETIME(6)     NOT NULL,
    updated_at    DATETIME(6)     NOT NULL,
    CONSTRAINT fk_orders_schedule FOREIGN KEY (schedule_id) REFERENCES schedules (id),
    INDEX ix_orders_expiry (status, held_until),
    INDEX ix_orders_schedule (schedule_id, status),
    INDEX ix_orders_user (user_id, concert_id, id),
    CONSTRAINT ck_orders_status CHECK (status IN ('HELD', 'CONFIRMED', 'RELEASED', 'EXPIRED', 'CANCELLED')),
    CONSTRAINT ck_orders_cancelled CHECK ((status = 'CANCELLED') = (cancelled_at IS NOT NULL)),
    CONSTRAINT ck_orders_cancel_reason CHECK (cancel_reason IN ('OWNER', 'SHOW_CANCELLED'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Every reservation made before orders is an order of one seat, with the same id.
INSERT INTO orders (id, user_id, concert_id, schedule_id, status, seat_count, total,
                    held_until, created_at, updated_at)
SELECT id, user_id, concert_id, schedule_id, status, 1, price, held_until, created_at, updated_at
FROM reservations;

-- A reservation keeps its seat's grade as held, beside its price.
ALTER TABLE reservations
    ADD COLUMN order_id BIGINT UNSIGNED NULL,
    ADD COLUMN grade VARCHAR(32) NOT NULL DEFAULT 'STANDARD';
UPDATE reservations SET order_id = id;
ALTER TABLE reservations
    MODIFY order_id BIGINT UNSIGNED NOT NULL,
    ADD CONSTRAINT fk_reservations_order FOREIGN KEY (order_id) REFERENCES orders (id),
    DROP CONSTRAINT ck_reservations_status,
    ADD CONSTRAINT ck_reservations_status
        CHECK (status IN ('HELD', 'CONFIRMED', 'RELEASED', 'EXPIRED', 'CANCELLED'));

-- An order is paid at most once; `reservation_id` names its first seat's line.
ALTER TABLE payments ADD COLUMN order_id BIGINT UNSIGNED NULL;
UPDATE payments SET order_id = reservation_id;
ALTER TABLE payments
    MODIFY order_id BIGINT UNSIGNED NOT NULL,
    ADD CONSTRAINT fk_payments_order FOREIGN KEY (order_id) REFERENCES orders (id),
    ADD UNIQUE KEY uq_payments_order (order_id);

-- Refunds credit the whole price back (REFUND) and debit the fee (FEE): two rows, so
-- the ledger shows both and still sums to the wallet.
ALTER TABLE point_ledger
    ADD COLUMN order_id BIGINT UNSIGNED NULL,
    DROP CONSTRAINT ck_point_ledger_kind,
    ADD CONSTRAINT ck_point_ledger_kind CHECK (kind IN ('CHARGE', 'PAYMENT', 'REFUND', 'FEE'));
UPDATE point_ledger SET order_id = reservation_id WHERE reservation_id IS NOT NULL;
-- One refund per order, whatever the code above does.
ALTER TABLE point_ledger
    ADD COLUMN refund_marker TINYINT AS (IF(kind = 'REFUND', 1, NULL)) STORED,
    ADD UNIQUE KEY uq_point_ledger_one_refund (order_id, refund_marker);

-- The projection's refunds.
ALTER TABLE concert_sales
    ADD COLUMN cancellations BIGINT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN refunded BIGINT UNSIGNED NOT NULL DEFAULT 0;
