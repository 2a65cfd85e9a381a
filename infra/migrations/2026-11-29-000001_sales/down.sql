DROP INDEX ix_seats_status ON seats;
DROP INDEX ix_reservations_fan ON reservations;
DROP TABLE sale_fans;
DROP TABLE sale_settings;
