#!/usr/bin/env python3
"""End-to-end contract check of the generated Python client against a running app.

    sdk/out/venv/bin/python sdk/e2e.py --app http://127.0.0.1:8080 --admin-key KEY [--issuer-dir DIR]

Uses only the generated client (boxoffice_client): every request, response and
problem body goes through the generated models, so a spec that disagrees with the
server fails here. Prints PASS/FAIL per step and exits non-zero on any failure.
Each run creates its own concert and users, so it can be repeated against one app.

With --issuer-dir (an app in BOXOFFICE_IDENTITY_MODE=jwt that trusts the keys
`tools/issuer keygen DIR` made), the users join with id tokens minted by
tools/issuer, and refused identities are checked to be typed 401/403 problems;
without it they join with a plain userId (an app in development mode).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from boxoffice_client import (
    AdminApi,
    ApiClient,
    ChargeRequest,
    ConcertsApi,
    Configuration,
    CreateConcert,
    CreateSchedule,
    ErrorCode,
    HoldRequest,
    JoinRequest,
    LedgerKind,
    OperationsApi,
    PaymentsApi,
    PayRequest,
    PointsApi,
    Problem,
    QueueApi,
    QueueState,
    ReservationsApi,
    ReservationState,
    SeatStatus,
)
from boxoffice_client.exceptions import (
    ApiException,
    ConflictException,
    ForbiddenException,
    UnauthorizedException,
    UnprocessableEntityException,
)

TIMEOUT = 10.0  # seconds, for every HTTP call
ACTIVE_WITHIN = 30.0  # seconds a fresh token may wait in line before we give up
SEATS = 5
PRICE = 10_000
TOP_UP = 50_000
SEAT = 3
ISSUER = Path(__file__).resolve().parent.parent / "tools" / "issuer"


def mint(issuer_dir: str, sub: str, *extra: str) -> str:
    """A signed id token for `sub` from the test issuer (tools/issuer)."""
    out = subprocess.run(
        [str(ISSUER), "mint", issuer_dir, "--sub", sub, *extra],
        check=True, capture_output=True, text=True, timeout=30,
    )
    return out.stdout.strip()


class Failed(Exception):
    pass


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise Failed(what)


def expect_problem(
    call: Callable[[], Any], exc: type[ApiException], status: int, code: ErrorCode
) -> Problem:
    """`call` must raise the typed `exc` with `status` and a parsed Problem with `code`."""
    try:
        got = call()
    except exc as e:
        expect(e.status == status, f"expected HTTP {status}, got {e.status}")
        expect(isinstance(e.data, Problem), f"problem body not parsed into Problem: {e.body!r}")
        p: Problem = e.data
        expect(p.code == code, f"expected code {code.value}, got {p.code!r} ({p.detail})")
        expect(p.status == status, f"problem status {p.status} != HTTP {status}")
        expect(bool(p.type) and bool(p.title), "problem type/title empty")
        return p
    except ApiException as e:
        raise Failed(f"expected {exc.__name__}, got {type(e).__name__} {e.status}: {e.body}")
    raise Failed(f"expected {exc.__name__} ({status} {code.value}), but the call succeeded: {got!r}")


def client(app: str, *, token: str | None = None, admin_key: str | None = None) -> ApiClient:
    config = Configuration(host=app, access_token=token)
    if admin_key is not None:
        config.api_key["AdminAuth"] = admin_key
    return ApiClient(config)


class Run:
    def __init__(self, app: str, admin_key: str, verbose: bool, issuer_dir: str | None = None) -> None:
        self.app = app.rstrip("/")
        self.verbose = verbose
        self.admin_key = admin_key
        self.issuer_dir = issuer_dir
        self.run_id = uuid.uuid4().hex[:8]
        self.failures = 0
        self.skipping = False

    def step(self, name: str, fn: Callable[[], str | None], critical: bool = True) -> None:
        """Runs one step. After a failed critical step the rest are skipped."""
        if self.skipping:
            print(f"SKIP {name}")
            return
        start = time.monotonic()
        try:
            note = fn()
        except Failed as e:
            self._fail(name, str(e), critical)
        except Exception as e:  # noqa: BLE001 - anything else is a failure too
            if self.verbose:
                traceback.print_exc(file=sys.stderr)
            why = " ".join(f"{type(e).__name__}: {e}".split())
            self._fail(name, why[:400], critical)
        else:
            ms = (time.monotonic() - start) * 1000
            print(f"PASS {name} ({ms:.0f} ms){': ' + note if note else ''}", flush=True)

    def _fail(self, name: str, why: str, critical: bool) -> None:
        self.failures += 1
        print(f"FAIL {name}: {why}", flush=True)
        if critical:
            self.skipping = True

    # --- the steps -------------------------------------------------------------

    def health(self) -> str:
        ops = OperationsApi(client(self.app))
        live = ops.get_liveness(_request_timeout=TIMEOUT)
        expect(live.status.value == "up", f"live: {live.status}")
        ready = ops.get_readiness(_request_timeout=TIMEOUT)
        expect(ready.status.value == "up", f"ready: {ready}")
        return f"live up, ready up (relay {ready.relay.value})"

    def create_concert(self) -> str:
        admin = AdminApi(client(self.app, admin_key=self.admin_key))
        created = admin.create_concert(
            CreateConcert(
                title=f"SDK contract {self.run_id}",
                artist="The Generated Clients",
                schedules=[
                    CreateSchedule(
                        venue="Contract Hall",
                        starts_at=datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30),
                        seat_count=SEATS,
                        price=PRICE,
                    )
                ],
            ),
            _request_timeout=TIMEOUT,
        )
        expect(len(created.schedule_ids) == 1, f"schedule ids: {created.schedule_ids}")
        self.concert_id = created.concert_id
        self.schedule_id = created.schedule_ids[0]
        return f"concert {self.concert_id}, schedule {self.schedule_id}"

    def admin_key_required(self) -> str:
        wrong = AdminApi(client(self.app, admin_key="not-the-key"))
        create = CreateConcert(title="x", artist="x", schedules=[])
        expect_problem(
            lambda: wrong.create_concert(create, _request_timeout=TIMEOUT),
            UnauthorizedException, 401, ErrorCode.INVALID_API_KEY,
        )
        return "wrong X-Api-Key -> 401 INVALID_API_KEY"

    def join_request(self, user_id: str) -> JoinRequest:
        """Proof of who joins: a signed id token (jwt mode), or the plain userId."""
        if self.issuer_dir:
            return JoinRequest(concert_id=self.concert_id, id_token=mint(self.issuer_dir, user_id))
        return JoinRequest(concert_id=self.concert_id, user_id=user_id)

    def join(self) -> str:
        anon = QueueApi(client(self.app))
        self.tickets = {}
        for who in ("ann", "bob"):
            user_id = f"sdk-{self.run_id}-{who}"
            t = anon.join_queue(self.join_request(user_id), _request_timeout=TIMEOUT)
            expect(t.user_id == user_id and t.concert_id == self.concert_id, f"ticket: {t}")
            expect(bool(t.token), "empty token")
            self.tickets[who] = t
        again = anon.join_queue(self.join_request(f"sdk-{self.run_id}-ann"), _request_timeout=TIMEOUT)
        expect(again.token == self.tickets["ann"].token, "joining again gave another token")
        self.ann = client(self.app, token=self.tickets["ann"].token)
        self.bob = client(self.app, token=self.tickets["bob"].token)
        return ", ".join(f"{w} {t.state.value}" for w, t in self.tickets.items())

    def identity_refused(self) -> str:
        """Joins without proof, with a forged, an expired or someone else's identity."""
        anon = QueueApi(client(self.app))
        ann = f"sdk-{self.run_id}-ann"
        token = mint(self.issuer_dir, ann)
        head, claims, _ = token.split(".")
        forged = f"{head}.{claims}.{'A' * 86}"
        expired = mint(self.issuer_dir, ann, "--ttl", "-3600")
        cases = [
            (JoinRequest(concert_id=self.concert_id, user_id=ann), UnauthorizedException, 401, "MISSING_IDENTITY"),
            (JoinRequest(concert_id=self.concert_id, id_token=forged), UnauthorizedException, 401, "INVALID_IDENTITY"),
            (JoinRequest(concert_id=self.concert_id, id_token=expired), UnauthorizedException, 401, "IDENTITY_EXPIRED"),
            (
                JoinRequest(concert_id=self.concert_id, id_token=token, user_id=f"sdk-{self.run_id}-bob"),
                ForbiddenException, 403, "IDENTITY_MISMATCH",
            ),
        ]
        seen = []
        for request, exc, status, code in cases:
            p = expect_problem(
                lambda r=request: anon.join_queue(r, _request_timeout=TIMEOUT), exc, status, ErrorCode(code)
            )
            seen.append(f"{status} {p.code.value}")
        return ", ".join(seen)

    def wait_active(self) -> str:
        deadline = time.monotonic() + ACTIVE_WITHIN
        polls = 0
        for who, api in (("ann", self.ann), ("bob", self.bob)):
            queue = QueueApi(api)
            while True:
                polls += 1
                status = queue.get_queue_status(_request_timeout=TIMEOUT)
                expect(status.concert_id == self.concert_id, f"status for another concert: {status}")
                if status.state == QueueState.ACTIVE:
                    expect(status.active_until is not None, "ACTIVE without activeUntil")
                    break
                expect(status.state == QueueState.WAITING, f"{who}: {status.state.value}")
                if time.monotonic() > deadline:
                    raise Failed(f"{who} still WAITING after {ACTIVE_WITHIN:.0f}s: {status}")
                time.sleep(0.2)
        return f"both ACTIVE after {polls} polls"

    def browse(self) -> str:
        concerts = ConcertsApi(self.ann)
        listed = concerts.list_concerts(_request_timeout=TIMEOUT)
        expect(any(c.id == self.concert_id for c in listed.concerts), "new concert not listed")
        schedules = concerts.list_schedules(self.concert_id, _request_timeout=TIMEOUT)
        expect([s.id for s in schedules.schedules] == [self.schedule_id], f"schedules: {schedules}")
        expect(schedules.schedules[0].available_seats == SEATS, f"available: {schedules}")
        seat_map = concerts.get_seat_map(self.schedule_id, _request_timeout=TIMEOUT)
        expect(
            [(s.seat_no, s.price, s.status) for s in seat_map.seats]
            == [(n, PRICE, SeatStatus.AVAILABLE) for n in range(1, SEATS + 1)],
            f"seat map: {seat_map}",
        )
        return f"{len(listed.concerts)} concerts, {SEATS} seats AVAILABLE"

    def hold(self) -> str:
        r = ReservationsApi(self.ann).hold_seat(
            HoldRequest(schedule_id=self.schedule_id, seat_no=SEAT), _request_timeout=TIMEOUT
        )
        expect(r.status == ReservationState.HELD, f"status {r.status}")
        expect((r.seat_no, r.price, r.concert_id) == (SEAT, PRICE, self.concert_id), f"{r}")
        expect(r.held_until > datetime.now(timezone.utc), f"heldUntil in the past: {r.held_until}")
        self.reservation = r
        seat = ConcertsApi(self.ann).get_seat_map(self.schedule_id, _request_timeout=TIMEOUT).seats[SEAT - 1]
        expect(seat.status == SeatStatus.HELD, f"seat map after hold: {seat}")
        return f"reservation {r.id}, seat {SEAT} HELD until {r.held_until.isoformat()}"

    def seat_taken(self) -> str:
        p = expect_problem(
            lambda: ReservationsApi(self.bob).hold_seat(
                HoldRequest(schedule_id=self.schedule_id, seat_no=SEAT), _request_timeout=TIMEOUT
            ),
            ConflictException, 409, ErrorCode.SEAT_TAKEN,
        )
        return f"409 {p.code.value}: {p.detail}"

    def charge(self) -> str:
        points = PointsApi(self.ann)
        self.balance_before = points.get_balance(_request_timeout=TIMEOUT).balance
        key = str(uuid.uuid4())
        first = points.charge_points_with_http_info(key, ChargeRequest(amount=TOP_UP), _request_timeout=TIMEOUT)
        expect(first.status_code == 201, f"status {first.status_code}")
        expect(first.data.amount == TOP_UP, f"charge {first.data}")
        expect(first.data.balance == self.balance_before + TOP_UP, f"balance {first.data.balance}")
        retry = points.charge_points_with_http_info(key, ChargeRequest(amount=TOP_UP), _request_timeout=TIMEOUT)
        expect(_replayed(retry.headers), f"retry not marked Idempotent-Replayed: {retry.headers}")
        expect(retry.data == first.data, f"replay differs: {retry.data} vs {first.data}")
        balance = points.get_balance(_request_timeout=TIMEOUT).balance
        expect(balance == self.balance_before + TOP_UP, f"charged twice? balance {balance}")
        return f"balance {self.balance_before} -> {balance}; same key replayed, charged once"

    def pay(self) -> str:
        payments = PaymentsApi(self.ann)
        key = str(uuid.uuid4())
        req = PayRequest(reservation_id=self.reservation.id)
        first = payments.pay_reservation_with_http_info(key, req, _request_timeout=TIMEOUT)
        expect(first.status_code == 201, f"status {first.status_code}")
        paid = first.data
        expect(paid.reservation_id == self.reservation.id and paid.amount == PRICE, f"payment {paid}")
        expect(paid.balance_after == self.balance_before + TOP_UP - PRICE, f"balanceAfter {paid.balance_after}")
        retry = payments.pay_reservation_with_http_info(key, req, _request_timeout=TIMEOUT)
        expect(_replayed(retry.headers), f"retry not marked Idempotent-Replayed: {retry.headers}")
        expect(retry.data.id == paid.id, f"replay paid again: {retry.data.id} != {paid.id}")
        self.payment = paid
        return f"payment {paid.id} of {paid.amount}; same key replayed"

    def already_paid(self) -> str:
        p = expect_problem(
            lambda: PaymentsApi(self.ann).pay_reservation(
                str(uuid.uuid4()), PayRequest(reservation_id=self.reservation.id), _request_timeout=TIMEOUT
            ),
            ConflictException, 409, ErrorCode.ALREADY_PAID,
        )
        return f"409 {p.code.value}: {p.detail}"

    def balance_after(self) -> str:
        points = PointsApi(self.ann)
        balance = points.get_balance(_request_timeout=TIMEOUT).balance
        expected = self.balance_before + TOP_UP - PRICE
        expect(balance == expected, f"balance {balance}, expected {expected}")
        history = points.get_points_history(limit=10, _request_timeout=TIMEOUT)
        kinds = [(e.kind, e.amount) for e in history.entries[:2]]
        expect(kinds == [(LedgerKind.PAYMENT, -PRICE), (LedgerKind.CHARGE, TOP_UP)], f"history {kinds}")
        expect(history.entries[0].reservation_id == self.reservation.id, "payment entry without reservation")
        seat = ConcertsApi(self.ann).get_seat_map(self.schedule_id, _request_timeout=TIMEOUT).seats[SEAT - 1]
        expect(seat.status == SeatStatus.SOLD, f"seat after payment: {seat}")
        r = ReservationsApi(self.ann).get_reservation(self.reservation.id, _request_timeout=TIMEOUT)
        expect(r.status == ReservationState.CONFIRMED, f"reservation after payment: {r.status}")
        return f"balance {balance} (= {self.balance_before} + {TOP_UP} - {PRICE}); seat SOLD, reservation CONFIRMED"

    def invalid_calls(self) -> str:
        # A negative amount, built without client-side validation so the server's
        # answer is what is checked even if the spec gains a `minimum`.
        negative = ChargeRequest.model_construct(amount=-5)
        p1 = expect_problem(
            lambda: PointsApi(self.bob).charge_points(str(uuid.uuid4()), negative, _request_timeout=TIMEOUT),
            UnprocessableEntityException, 422, ErrorCode.INVALID_AMOUNT,
        )
        p2 = expect_problem(
            lambda: QueueApi(client(self.app, token="not-a-real-token")).get_queue_status(_request_timeout=TIMEOUT),
            UnauthorizedException, 401, ErrorCode.INVALID_TOKEN,
        )
        p3 = expect_problem(
            lambda: ReservationsApi(self.bob).get_reservation(self.reservation.id, _request_timeout=TIMEOUT),
            ApiException, 404, ErrorCode.RESERVATION_NOT_FOUND,
        )
        return f"422 {p1.code.value}, 401 {p2.code.value}, someone else's hold 404 {p3.code.value}"

    def leave(self) -> str:
        queue = QueueApi(self.bob)
        queue.leave_queue(_request_timeout=TIMEOUT)
        p = expect_problem(
            lambda: ReservationsApi(self.bob).hold_seat(
                HoldRequest(schedule_id=self.schedule_id, seat_no=1), _request_timeout=TIMEOUT
            ),
            UnauthorizedException, 401, ErrorCode.TOKEN_EXPIRED,
        )
        return f"bob left; holding after that -> 401 {p.code.value}"


def _replayed(headers: Any) -> bool:
    found = {k.lower(): v for k, v in (headers or {}).items()}
    return str(found.get("idempotent-replayed", "")).lower() == "true"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--admin-key", required=True, help="the app's admin API key (X-Api-Key)")
    parser.add_argument(
        "--issuer-dir",
        help="the test issuer's key directory (tools/issuer keygen DIR) of an app in jwt mode: "
        "users join with id tokens minted with it",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args()

    run = Run(args.app, args.admin_key, args.verbose, args.issuer_dir)
    print(f"sdk e2e against {run.app} (run {run.run_id})")
    run.step("health: live and ready parse", run.health, critical=False)
    run.step("admin: create concert (X-Api-Key)", run.create_concert)
    run.step("admin: wrong key is 401 INVALID_API_KEY", run.admin_key_required, critical=False)
    run.step("queue: two users join" + (" with signed id tokens" if run.issuer_dir else ""), run.join)
    if run.issuer_dir:
        run.step(
            "identity: none, forged, expired, someone else's -> typed 401/403", run.identity_refused, critical=False
        )
    run.step("queue: poll until ACTIVE", run.wait_active)
    run.step("browse: concerts, schedules, seat map", run.browse)
    run.step("hold: ann holds a seat", run.hold)
    run.step("hold: bob, same seat -> 409 SEAT_TAKEN", run.seat_taken, critical=False)
    run.step("points: charge with Idempotency-Key", run.charge)
    run.step("pay: with Idempotency-Key", run.pay)
    run.step("pay: new key -> 409 ALREADY_PAID", run.already_paid, critical=False)
    run.step("points: balance down by the price", run.balance_after, critical=False)
    run.step("errors: invalid calls are typed 4xx with a code", run.invalid_calls, critical=False)
    run.step("queue: leave ends the token", run.leave, critical=False)

    if run.failures:
        print(f"FAIL sdk e2e: {run.failures} step(s) failed")
        return 1
    print("PASS sdk e2e: all steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
