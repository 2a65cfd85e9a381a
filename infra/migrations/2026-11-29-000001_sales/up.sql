-- A concert's sale: its state, its opening, how fast and how many fans are let in,
-- and how many seats one fan may take. NULL rate or capacity: the server's
-- configured default, so concerts created without settings behave as before.
CREATE TABLE sale_settings (
    concert_id         BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    state              VARCHAR(16)     NOT NULL,
    opens_at           DATETIME(6)     NULL,
    admission_rate     INT UNSIGNED    NULL,
    active_capacity    INT UNSIGNED    NULL,
    max_seats_per_fan  INT UNSIGNED    NOT NULL DEFAULT 4,
    updated_at         DATETIME(6)     NOT NULL,
    CONSTRAINT fk_sale_settings_concert FOREIGN KEY (concert_id) REFERENCES concerts (id),
    CONSTRAINT ck_sale_settings_state CHECK (state IN ('SCHEDULED', 'OPEN', 'PAUSED', 'CLOSED')),
    CONSTRAINT ck_sale_settings_scheduled CHECK (state <> 'SCHEDULED' OR opens_at IS NOT NULL)
) ENGINE = InnoDB;

-- Concerts that existed before sales had settings are on sale, as they were.
INSERT INTO sale_settings (concert_id, state, updated_at)
SELECT id, 'OPEN', created_at FROM concerts;

-- One row per fan who ever held seats of a concert: every hold of theirs locks it
-- first, so concurrent holds by one fan are counted one after another and cannot
-- together pass the sale's limit of seats per fan.
CREATE TABLE sale_fans (
    concert_id  BIGINT UNSIGNED NOT NULL,
    user_id     VARCHAR(64)     NOT NULL,
    PRIMARY KEY (concert_id, user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A fan's seats of a concert are counted from their reservations.
CREATE INDEX ix_reservations_fan ON reservations (user_id, concert_id, status);

-- "Is any seat of this schedule still unsold?" answered from the index alone.
CREATE INDEX ix_seats_status ON seats (schedule_id, status);
