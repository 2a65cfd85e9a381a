//! Diesel's view of the tables in `infra/migrations`. Generated columns
//! (`reservations.sold_marker`,
//! `point_ledger.refund_marker`) are left out: only MySQL writes them.

diesel::table! {
    concerts (id) {
        id -> Unsigned<BigInt>,
        title -> Varchar,
        artist -> Varchar,
        created_at -> Datetime,
        cancellation_cutoff_hours -> Unsigned<Integer>,
        cancellation_fee_percent -> Unsigned<TinyInt>,
    }
}

diesel::table! {
    schedules (id) {
        id -> Unsigned<BigInt>,
        concert_id -> Unsigned<BigInt>,
        venue -> Varchar,
        starts_at -> Datetime,
        seat_count -> Unsigned<Integer>,
        status -> Varchar,
    }
}

diesel::table! {
    seat_grades (schedule_id, grade) {
        schedule_id -> Unsigned<BigInt>,
        grade -> Varchar,
        price -> Unsigned<BigInt>,
        first_seat -> Unsigned<Integer>,
        last_seat -> Unsigned<Integer>,
    }
}

diesel::table! {
    seats (schedule_id, seat_no) {
        schedule_id -> Unsigned<BigInt>,
        seat_no -> Unsigned<Integer>,
        price -> Unsigned<BigInt>,
        status -> Varchar,
        held_until -> Nullable<Datetime>,
        reservation_id -> Nullable<Unsigned<BigInt>>,
        grade -> Varchar,
    }
}

diesel::table! {
    orders (id) {
        id -> Unsigned<BigInt>,
        user_id -> Varchar,
        concert_id -> Unsigned<BigInt>,
        schedule_id -> Unsigned<BigInt>,
        status -> Varchar,
        seat_count -> Unsigned<Integer>,
        total -> Unsigned<BigInt>,
        held_until -> Datetime,
        refund -> Nullable<Unsigned<BigInt>>,
        fee -> Nullable<Unsigned<BigInt>>,
        cancel_reason -> Nullable<Varchar>,
        cancelled_at -> Nullable<Datetime>,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    reservations (id) {
        id -> Unsigned<BigInt>,
        user_id -> Varchar,
        concert_id -> Unsigned<BigInt>,
        schedule_id -> Unsigned<BigInt>,
        seat_no -> Unsigned<Integer>,
        price -> Unsigned<BigInt>,
        status -> Varchar,
        held_until -> Datetime,
        created_at -> Datetime,
        updated_at -> Datetime,
        order_id -> Unsigned<BigInt>,
        grade -> Varchar,
    }
}

diesel::table! {
    wallets (user_id) {
        user_id -> Varchar,
        balance -> Unsigned<BigInt>,
        updated_at -> Datetime,
    }
}

diesel::table! {
    point_ledger (id) {
        id -> Unsigned<BigInt>,
        user_id -> Varchar,
        kind -> Varchar,
        amount -> BigInt,
        balance_after -> Unsigned<BigInt>,
        reservation_id -> Nullable<Unsigned<BigInt>>,
        created_at -> Datetime,
        order_id -> Nullable<Unsigned<BigInt>>,
    }
}

diesel::table! {
    payments (id) {
        id -> Unsigned<BigInt>,
        reservation_id -> Unsigned<BigInt>,
        user_id -> Varchar,
        amount -> Unsigned<BigInt>,
        queue_token_hash -> Nullable<Binary>,
        created_at -> Datetime,
        order_id -> Unsigned<BigInt>,
    }
}

diesel::table! {
    idempotency_keys (user_id, scope, idempotency_key) {
        user_id -> Varchar,
        scope -> Varchar,
        idempotency_key -> Varchar,
        request_hash -> Char,
        response_status -> Nullable<Unsigned<SmallInt>>,
        response_body -> Nullable<Text>,
        created_at -> Datetime,
    }
}

diesel::table! {
    outbox (id) {
        id -> Unsigned<BigInt>,
        event_id -> Char,
        event_type -> Varchar,
        event_key -> Varchar,
        payload -> Text,
        occurred_at -> Datetime,
        published_at -> Nullable<Datetime>,
    }
}

diesel::table! {
    consumed_events (event_id) {
        event_id -> Char,
        event_type -> Varchar,
        consumed_at -> Datetime,
    }
}

diesel::table! {
    concert_sales (concert_id) {
        concert_id -> Unsigned<BigInt>,
        holds -> Unsigned<BigInt>,
        releases -> Unsigned<BigInt>,
        expirations -> Unsigned<BigInt>,
        seats_sold -> Unsigned<BigInt>,
        revenue -> Unsigned<BigInt>,
        updated_at -> Datetime,
        cancellations -> Unsigned<BigInt>,
        refunded -> Unsigned<BigInt>,
    }
}

diesel::table! {
    sale_settings (concert_id) {
        concert_id -> Unsigned<BigInt>,
        state -> Varchar,
        opens_at -> Nullable<Datetime>,
        admission_rate -> Nullable<Unsigned<Integer>>,
        active_capacity -> Nullable<Unsigned<Integer>>,
        max_seats_per_fan -> Unsigned<Integer>,
        updated_at -> Datetime,
    }
}

diesel::table! {
    sale_fans (concert_id, user_id) {
        concert_id -> Unsigned<BigInt>,
        user_id -> Varchar,
    }
}

diesel::joinable!(schedules -> concerts (concert_id));
diesel::joinable!(reservations -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(
    concerts,
    schedules,
    seat_grades,
    seats,
    orders,
    reservations,
    wallets,
    point_ledger,
    payments,
    idempotency_keys,
    outbox,
    consumed_events,
    concert_sales,
    sale_settings,
    sale_fans,
);
