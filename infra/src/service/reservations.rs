//! Holding, reading and releasing a seat.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use domain::reservation::Release;
use domain::token::Grant;
use domain::{
    DomainEvent, HoldError, ReleaseError, Reservation, ReservationId, ReservationStatus,
    ScheduleId, SeatNo,
};

use super::{Abort, Services, catalog, retry_deadlocks};
use crate::db::reservations::NewHold;
use crate::db::{self, outbox, reservations, sale_settings};
use crate::metrics::Outcome;
use crate::redis::cache::Entry;
use crate::redis::lock;

/// Longer than a hold transaction ever takes; only matters if this process dies
/// holding the lock.
const SEAT_LOCK_TTL: Duration = Duration::from_secs(5);

/// Holds `seat` for the token's user. The Redis lock turns a crowd on one seat into
/// quick 409s; the locked, conditional seat update in MySQL decides.
pub async fn hold(
    svc: &Services,
    grant: &Grant,
    schedule: ScheduleId,
    seat: SeatNo,
    now: DateTime<Utc>,
) -> Result<Reservation, HoldError> {
    let held = take_seat(svc, grant, schedule, seat, now).await;
    let outcome = held.as_ref().map_or_else(Outcome::outcome, |_| "held");
    svc.metrics.holds.with_label_values(&[outcome]).inc();
    held
}

async fn take_seat(
    svc: &Services,
    grant: &Grant,
    schedule: ScheduleId,
    seat: SeatNo,
    now: DateTime<Utc>,
) -> Result<Reservation, HoldError> {
    let info = catalog::schedule_info(svc, schedule)
        .await?
        .ok_or(HoldError::ScheduleNotFound)?;
    grant.require_active_for(info.concert_id)?;
    if seat.get() > info.seat_count {
        return Err(HoldError::SeatNotFound);
    }
    let started = Instant::now();
    let attempt = lock::try_acquire(
        &svc.redis,
        svc.keys.seat_lock(schedule, seat),
        SEAT_LOCK_TTL,
    )
    .await;
    svc.metrics
        .seat_lock_wait
        .observe(started.elapsed().as_secs_f64());
    let result = match &attempt {
        Ok(Some(_)) => "acquired",
        Ok(None) => "contended",
        Err(_) => "error",
    };
    svc.metrics
        .seat_lock_attempts
        .with_label_values(&[result])
        .inc();
    let lock = attempt
        // Fail closed: without the lock we could still not oversell, but we would
        // send the whole crowd to MySQL; refusing is the safer overload behaviour.
        .map_err(|e| HoldError::Unavailable(e.into()))?
        .ok_or(HoldError::SeatTaken)?;
    let reservation = match hold_in_db(svc, grant, info.concert_id, schedule, seat, now).await {
        Ok(r) => r,
        Err(e) => {
            if let Err(e) = lock.release(&svc.redis).await {
                tracing::warn!(error = %e, "seat lock release failed; it lapses by its TTL");
            }
            return Err(e);
        }
    };
    svc.relay.wake();
    // Both in flight together: the answer waits for one Redis round trip, not two.
    let invalidated = [Entry::SeatMap(schedule), Entry::Schedules(info.concert_id)];
    let (marked, ()) = tokio::join!(
        // From now on a crowd on this seat gets its 409 from Redis alone.
        lock.into_hold(&svc.redis, reservation.id, reservation.held_until),
        svc.cache.invalidate(&invalidated),
    );
    if let Err(e) = marked {
        tracing::warn!(error = %e, "seat lock update failed; it lapses by its TTL");
    }
    Ok(reservation)
}

async fn hold_in_db(
    svc: &Services,
    grant: &Grant,
    concert: domain::ConcertId,
    schedule: ScheduleId,
    seat: SeatNo,
    now: DateTime<Utc>,
) -> Result<Reservation, HoldError> {
    let held_until = svc.settings.hold_seconds.ends_at(now);
    let seats_per_fan = super::sale::current(svc, concert)
        .await?
        .map_or(domain::SaleSettings::DEFAULT_MAX_SEATS_PER_FAN, |s| {
            s.settings.max_seats_per_fan
        });
    let mut conn = svc.db().await?;
    retry_deadlocks!(
        conn.transaction(async |conn| {
            // The fan's row first: their concurrent holds count one after another.
            sale_settings::lock_fan(conn, concert, &grant.user_id).await?;
            let taken = sale_settings::fan_seats(conn, concert, &grant.user_id, now).await?;
            if taken >= u64::from(seats_per_fan) {
                return Err(Abort::Outcome(HoldError::SeatLimit(seats_per_fan)));
            }
            let locked = reservations::lock_seat(conn, schedule, seat)
                .await?
                .ok_or(Abort::Outcome(HoldError::SeatNotFound))?;
            if !locked.can_hold(now) {
                return Err(Abort::Outcome(HoldError::SeatTaken));
            }
            let price = domain::Points(locked.price);
            let hold = NewHold {
                user: &grant.user_id,
                concert,
                schedule,
                seat,
                price,
                held_until,
            };
            let r = reservations::insert_hold(conn, hold, now).await?;
            let event = DomainEvent::ReservationHeld {
                reservation_id: r.id,
                user_id: r.user_id.clone(),
                concert_id: concert,
                schedule_id: schedule,
                seat_no: seat,
                price,
                held_until,
            };
            outbox::append(conn, vec![event], now).await?;
            Ok(r)
        })
        .await
    )
    .map_err(|abort| match abort {
        Abort::Outcome(e) => e,
        Abort::Replay => unreachable!("holds take no Idempotency-Key"),
        Abort::Failed(e) => HoldError::Internal(e),
    })
}

/// One's own reservation, as of `now`. Someone else's looks like no reservation.
pub async fn get(
    svc: &Services,
    grant: &Grant,
    id: ReservationId,
    now: DateTime<Utc>,
) -> Result<Reservation, ReleaseError> {
    let mut conn = svc.db().await?;
    let mut r = reservations::find(&mut conn, id)
        .await
        .map_err(db::classify)?
        .filter(|r| r.user_id == grant.user_id)
        .ok_or(ReleaseError::NotFound)?;
    r.status = r.status_at(now);
    Ok(r)
}

/// Gives one's own hold back. Releasing again, or after the hold lapsed, changes
/// nothing and answers the same.
pub async fn release(
    svc: &Services,
    grant: &Grant,
    id: ReservationId,
    now: DateTime<Utc>,
) -> Result<Reservation, ReleaseError> {
    let released = give_back(svc, grant, id, now).await;
    let outcome = released
        .as_ref()
        .map_or_else(Outcome::outcome, |_| "released");
    svc.metrics.releases.with_label_values(&[outcome]).inc();
    released
}

async fn give_back(
    svc: &Services,
    grant: &Grant,
    id: ReservationId,
    now: DateTime<Utc>,
) -> Result<Reservation, ReleaseError> {
    let mut conn = svc.db().await?;
    let (r, freed) = retry_deadlocks!(
        conn.transaction(async |conn| {
            let mut r = reservations::lock(conn, id)
                .await?
                .filter(|r| r.user_id == grant.user_id)
                .ok_or(Abort::Outcome(ReleaseError::NotFound))?;
            match r.release(now).map_err(Abort::Outcome)? {
                Release::AlreadyOver => {
                    r.status = r.status_at(now);
                    Ok((r, false))
                }
                Release::FreeSeat => {
                    reservations::set_status(conn, &[r.id], ReservationStatus::Released, now)
                        .await?;
                    reservations::free_seats(conn, &[r.id]).await?;
                    let event = DomainEvent::ReservationReleased {
                        reservation_id: r.id,
                        concert_id: r.concert_id,
                        schedule_id: r.schedule_id,
                        seat_no: r.seat_no,
                    };
                    outbox::append(conn, vec![event], now).await?;
                    r.status = ReservationStatus::Released;
                    Ok((r, true))
                }
            }
        })
        .await
    )
    .map_err(|abort| match abort {
        Abort::Outcome(e) => e,
        Abort::Replay => unreachable!("releases take no Idempotency-Key"),
        Abort::Failed(e) => ReleaseError::Internal(e),
    })?;
    if freed {
        svc.relay.wake();
        let key = svc.keys.seat_lock(r.schedule_id, r.seat_no);
        if let Err(e) = lock::clear_hold(&svc.redis, &key, r.id).await {
            tracing::warn!(error = %e, "seat marker not cleared; MySQL answers for the seat until it lapses");
        }
        svc.cache
            .invalidate(&[
                Entry::SeatMap(r.schedule_id),
                Entry::Schedules(r.concert_id),
            ])
            .await;
    }
    Ok(r)
}
