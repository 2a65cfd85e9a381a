-- What `boxoffice consume` builds from the event stream: sales per concert, and the
-- ids of the events already applied, written in the same transaction, so an event
-- delivered twice (Kafka is at-least-once) changes the projection once.

CREATE TABLE consumed_events (
    event_id     CHAR(36)        NOT NULL PRIMARY KEY,
    event_type   VARCHAR(64)     NOT NULL,
    consumed_at  DATETIME(6)     NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE concert_sales (
    concert_id   BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    holds        BIGINT UNSIGNED NOT NULL DEFAULT 0,
    releases     BIGINT UNSIGNED NOT NULL DEFAULT 0,
    expirations  BIGINT UNSIGNED NOT NULL DEFAULT 0,
    seats_sold   BIGINT UNSIGNED NOT NULL DEFAULT 0,
    revenue      BIGINT UNSIGNED NOT NULL DEFAULT 0,
    updated_at   DATETIME(6)     NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
