-- The booking core. MySQL is the truth: every rule that must never break
-- (no seat sold twice, no payment twice, no negative balance) is backed by a
-- key or a conditional write here, not only by code.

CREATE TABLE concerts (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    title       VARCHAR(200)    NOT NULL,
    artist      VARCHAR(200)    NOT NULL,
    created_at  DATETIME(6)     NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE schedules (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    concert_id  BIGINT UNSIGNED NOT NULL,
    venue       VARCHAR(200)    NOT NULL,
    starts_at   DATETIME(6)     NOT NULL,
    seat_count  INT UNSIGNED    NOT NULL,
    CONSTRAINT fk_schedules_concert FOREIGN KEY (concert_id) REFERENCES concerts (id),
    INDEX ix_schedules_concert (concert_id, starts_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per seat. A hold is one conditional write to this row.
CREATE TABLE seats (
    schedule_id     BIGINT UNSIGNED NOT NULL,
    seat_no         INT UNSIGNED    NOT NULL,
    price           BIGINT UNSIGNED NOT NULL,
    status          VARCHAR(16)     NOT NULL DEFAULT 'AVAILABLE',
    held_until      DATETIME(6)     NULL,
    reservation_id  BIGINT UNSIGNED NULL,
    PRIMARY KEY (schedule_id, seat_no),
    CONSTRAINT fk_seats_schedule FOREIGN KEY (schedule_id) REFERENCES schedules (id),
    INDEX ix_seats_reservation (reservation_id),
    CONSTRAINT ck_seats_status CHECK (status IN ('AVAILABLE', 'HELD', 'SOLD'))
) ENGINE = InnoDB;

CREATE TABLE reservations (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id      VARCHAR(64)     NOT NULL,
    concert_id   BIGINT UNSIGNED NOT NULL,
    schedule_id  BIGINT UNSIGNED NOT NULL,
    seat_no      INT UNSIGNED    NOT NULL,
    price        BIGINT UNSIGNED NOT NULL,
    status       VARCHAR(16)     NOT NULL,
    held_until   DATETIME(6)     NOT NULL,
    created_at   DATETIME(6)     NOT NULL,
    updated_at   DATETIME(6)     NOT NULL,
    -- 1 while CONFIRMED, NULL otherwise: the unique key below then admits one
    -- confirmed sale per seat, however many lapsed or released holds it had.
    sold_marker  TINYINT AS (IF(status = 'CONFIRMED', 1, NULL)) STORED,
    CONSTRAINT fk_reservations_seat FOREIGN KEY (schedule_id, seat_no) REFERENCES seats (schedule_id, seat_no),
    UNIQUE KEY uq_reservations_one_sale_per_seat (schedule_id, seat_no, sold_marker),
    INDEX ix_reservations_expiry (status, held_until),
    INDEX ix_reservations_user (user_id),
    CONSTRAINT ck_reservations_status CHECK (status IN ('HELD', 'CONFIRMED', 'RELEASED', 'EXPIRED'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE wallets (
    user_id     VARCHAR(64)     NOT NULL PRIMARY KEY,
    balance     BIGINT UNSIGNED NOT NULL DEFAULT 0,
    updated_at  DATETIME(6)     NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Every change of a balance, with the balance after it: the ledger sums to the wallet.
CREATE TABLE point_ledger (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id         VARCHAR(64)     NOT NULL,
    kind            VARCHAR(16)     NOT NULL,
    amount          BIGINT          NOT NULL,
    balance_after   BIGINT UNSIGNED NOT NULL,
    reservation_id  BIGINT UNSIGNED NULL,
    created_at      DATETIME(6)     NOT NULL,
    INDEX ix_point_ledger_user (user_id, id),
    CONSTRAINT ck_point_ledger_kind CHECK (kind IN ('CHARGE', 'PAYMENT'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE payments (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    reservation_id  BIGINT UNSIGNED NOT NULL,
    user_id         VARCHAR(64)     NOT NULL,
    amount          BIGINT UNSIGNED NOT NULL,
    created_at      DATETIME(6)     NOT NULL,
    -- A reservation is paid at most once, whatever the code above does.
    UNIQUE KEY uq_payments_reservation (reservation_id),
    CONSTRAINT fk_payments_reservation FOREIGN KEY (reservation_id) REFERENCES reservations (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The first successful answer to a money-moving request, replayed for the same key.
CREATE TABLE idempotency_keys (
    user_id          VARCHAR(64)   NOT NULL,
    scope            VARCHAR(16)   NOT NULL,
    idempotency_key  VARCHAR(64)   NOT NULL,
    request_hash     CHAR(64)      NOT NULL,
    response_status  SMALLINT UNSIGNED NULL,
    response_body    TEXT          NULL,
    created_at       DATETIME(6)   NOT NULL,
    PRIMARY KEY (user_id, scope, idempotency_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Events written in the same transaction as the change they describe; a relay
-- publishes them to Kafka and sets published_at.
CREATE TABLE outbox (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id       CHAR(36)        NOT NULL,
    event_type     VARCHAR(64)     NOT NULL,
    event_key      VARCHAR(128)    NOT NULL,
    payload        TEXT            NOT NULL,
    occurred_at    DATETIME(6)     NOT NULL,
    published_at   DATETIME(6)     NULL,
    UNIQUE KEY uq_outbox_event (event_id),
    INDEX ix_outbox_unpublished (published_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
