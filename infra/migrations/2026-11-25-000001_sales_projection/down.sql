DROP TABLE concert_sales;
DROP TABLE consumed_events;
