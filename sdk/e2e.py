#!/usr/bin/env python3
"""End-to-end contract check of the generated Python client against a running app.

    sdk/out/venv/bin/python sdk/e2e.py --app http://127.0.0.1:8080 --admin-key KEY [--issuer-dir DIR]

Uses only the generated client (boxoffice_client): every request, response and
problem body goes through the generated models, so a spec that disagrees with the
server fails here. Each refused call is checked to raise a typed problem through
that operation's own response map (the statuses its spec lists), and the maps of
all operations are checked against the spec the app serves. Prints PASS/FAIL per
step and exits non-zero on any failure.
Each run creates its own concert and users, so it can be repeated against one app.

With --issuer-dir (an app in BOXOFFICE_IDENTITY_MODE=jwt that trusts the keys
`tools/issuer keygen DIR` made), the users join with id tokens minted by
tools/issuer, and refused identities are checked to be typed 401/403 problems;
without it they join with a plain userId (an app in development mode).
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import json
import re
import subprocess
import sys
import time
import traceback
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import boxoffice_client
from boxoffice_client import (
    AdminApi,
    ApiClient,
    CancellationInput,
    ChargeRequest,
    ConcertsApi,
    Configuration,
    CreateConcert,
    GradeInput,
    CreateSchedule,
    ErrorCode,
    HoldRequest,
    JoinRequest,
    LedgerKind,
    OperationsApi,
    OrderRequest,
    OrdersApi,
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
    NotFoundException,
    UnauthorizedException,
    UnprocessableEntityException,
)

TIMEOUT = 10.0  # seconds, for every HTTP call
ACTIVE_WITHIN = 30.0  # seconds a fresh token may wait in line before we give up
SEATS = 5
PRICE = 10_000
TOP_UP = 50_000
SEAT = 3
# The concert with grades (orders): VIP seats 1-2, R seats 3-8, a 10% cancellation fee.
GRADES = [("VIP", 30_000, 1, 2), ("R", 20_000, 3, 8)]
VIP_PRICE, R_PRICE = 30_000, 20_000
FEE_PERCENT = 10
SHOW_REFUNDED_WITHIN = 30.0  # seconds the background refunds of a cancelled show may take
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


@functools.cache
def _response_maps(api_class: type) -> dict[str, dict[str, str | None]]:
    """Each generated method of `api_class` -> its `_response_types_map`.

    The client parses a response body into the type this map gives for its status,
    error answers included: `ApiException.data` is a typed Problem only for the
    statuses the operation's spec lists. The map is a local of each generated method,
    so it is read from the method's source.
    """
    tree = ast.parse(Path(inspect.getsourcefile(api_class)).read_text())
    (cls,) = (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == api_class.__name__)
    maps = {}
    for fn in cls.body:
        for node in ast.walk(fn):
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "_response_types_map":
                maps[fn.name] = ast.literal_eval(node.value)
    return maps


def responses_of(op: Callable[..., Any]) -> dict[str, str | None]:
    """The status -> type map of a generated operation, given as a bound method."""
    return _response_maps(type(op.__self__))[op.__name__]


def expect_problem(
    op: Callable[..., Any], *args: Any, raises: tuple[type[ApiException], int, ErrorCode], **kwargs: Any
) -> Problem:
    """Calling the generated operation `op` must raise the typed exception with the
    status and a Problem with the code of `raises`, typed through `op`'s own map."""
    exc, status, code = raises
    declared = responses_of(op)
    expect(
        declared.get(str(status)) == "Problem",
        f"{op.__name__} does not list {status} as a Problem (its map: {declared})",
    )
    try:
        got = op(*args, _request_timeout=TIMEOUT, **kwargs)
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

    def operation_maps(self) -> str:
        """Each generated operation maps the statuses the app's own spec lists for it, no more."""
        generated: dict[str, dict[str, str | None]] = {}
        for name in boxoffice_client.__all__:
            api = getattr(boxoffice_client, name)
            if isinstance(api, type) and api.__module__.startswith("boxoffice_client.api."):
                generated.update(_response_maps(api))

        def statuses(name: str) -> str:
            return ", ".join(sorted(generated[name]))

        # The issue's facts: listing concerts answers no 4xx; holding and paying take a
        # body (413) and answer 409 and 422.
        expect(statuses("list_concerts") == "200, 500, 503", f"list_concerts maps {statuses('list_concerts')}")
        for name in ("hold_seat", "hold_order", "pay_reservation"):
            expect({"409", "413", "422"} <= set(generated[name]), f"{name} maps {statuses(name)}")

        with urllib.request.urlopen(f"{self.app}/openapi.json", timeout=TIMEOUT) as served:
            spec = json.load(served)
        wrong, checked = [], 0
        for path, item in spec["paths"].items():
            for method, op in item.items():
                name = re.sub(r"(?<!^)(?=[A-Z])", "_", op["operationId"]).lower()
                checked += 1
                if name not in generated:
                    wrong.append(f"{method.upper()} {path}: no {name} in the client")
                    continue
                listed = {
                    status: "Problem" if "application/problem+json" in answer.get("content", {}) else "other"
                    for status, answer in op["responses"].items()
                }
                mapped = {status: "Problem" if t == "Problem" else "other" for status, t in generated[name].items()}
                if mapped != listed:
                    wrong.append(f"{name}: the client maps {sorted(mapped)}, the spec lists {sorted(listed)}")
        expect(not wrong, f"{len(wrong)} of {checked} operations differ: " + "; ".join(wrong[:3]))
        return (
            f"{checked} operations map what the served spec lists; list_concerts: {statuses('list_concerts')}; "
            "hold_seat, hold_order, pay_reservation: 409, 413 and 422 among theirs"
        )

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
        expect_problem(wrong.create_concert, create, raises=(UnauthorizedException, 401, ErrorCode.INVALID_API_KEY))
        return "wrong X-Api-Key -> 401 INVALID_API_KEY"

    def join_request(self, user_id: str, concert_id: int | None = None) -> JoinRequest:
        """Proof of who joins: a signed id token (jwt mode), or the plain userId."""
        concert_id = self.concert_id if concert_id is None else concert_id
        if self.issuer_dir:
            return JoinRequest(concert_id=concert_id, id_token=mint(self.issuer_dir, user_id))
        return JoinRequest(concert_id=concert_id, user_id=user_id)

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
            p = expect_problem(anon.join_queue, request, raises=(exc, status, ErrorCode(code)))
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
            ReservationsApi(self.bob).hold_seat,
            HoldRequest(schedule_id=self.schedule_id, seat_no=SEAT),
            raises=(ConflictException, 409, ErrorCode.SEAT_TAKEN),
        )
        return f"409 {p.code.value}, a Problem by hold_seat's own map: {p.detail}"

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
            PaymentsApi(self.ann).pay_reservation,
            str(uuid.uuid4()),
            PayRequest(reservation_id=self.reservation.id),
            raises=(ConflictException, 409, ErrorCode.ALREADY_PAID),
        )
        return f"409 {p.code.value}, a Problem by pay_reservation's own map: {p.detail}"

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
            PointsApi(self.bob).charge_points, str(uuid.uuid4()), negative,
            raises=(UnprocessableEntityException, 422, ErrorCode.INVALID_AMOUNT),
        )
        p2 = expect_problem(
            QueueApi(client(self.app, token="not-a-real-token")).get_queue_status,
            raises=(UnauthorizedException, 401, ErrorCode.INVALID_TOKEN),
        )
        p3 = expect_problem(
            ReservationsApi(self.bob).get_reservation, self.reservation.id,
            raises=(NotFoundException, 404, ErrorCode.RESERVATION_NOT_FOUND),
        )
        return f"422 {p1.code.value}, 401 {p2.code.value}, someone else's hold 404 {p3.code.value}"

    def leave(self) -> str:
        queue = QueueApi(self.bob)
        queue.leave_queue(_request_timeout=TIMEOUT)
        p = expect_problem(
            ReservationsApi(self.bob).hold_seat,
            HoldRequest(schedule_id=self.schedule_id, seat_no=1),
            raises=(UnauthorizedException, 401, ErrorCode.TOKEN_EXPIRED),
        )
        return f"bob left; holding after that -> 401 {p.code.value}"

    # --- orders: several seats at once, grades, cancellations ---------------------

    def create_graded_concert(self) -> str:
        admin = AdminApi(client(self.app, admin_key=self.admin_key))
        created = admin.create_concert(
            CreateConcert(
                title=f"SDK orders {self.run_id}",
                artist="The Generated Clients",
                schedules=[
                    CreateSchedule(
                        venue="Grade Hall",
                        starts_at=datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30),
                        grades=[
                            GradeInput(name=name, price=price, first_seat=first, last_seat=last)
                            for name, price, first, last in GRADES
                        ],
                    )
                ],
                cancellation=CancellationInput(cutoff_hours=24, fee_percent=FEE_PERCENT),
            ),
            _request_timeout=TIMEOUT,
        )
        expect(len(created.schedule_ids) == 1, f"schedule ids: {created.schedule_ids}")
        self.graded_concert = created.concert_id
        self.graded_schedule = created.schedule_ids[0]
        return f"concert {self.graded_concert}, schedule {self.graded_schedule}: VIP 1-2, R 3-8"

    def join_graded(self) -> str:
        anon = QueueApi(client(self.app))
        self.fans = {}
        for who in ("cat", "dan", "eve"):
            user_id = f"sdk-{self.run_id}-{who}"
            t = anon.join_queue(self.join_request(user_id, self.graded_concert), _request_timeout=TIMEOUT)
            expect(t.concert_id == self.graded_concert, f"ticket: {t}")
            self.fans[who] = client(self.app, token=t.token)
        deadline = time.monotonic() + ACTIVE_WITHIN
        for who, api in self.fans.items():
            while (status := QueueApi(api).get_queue_status(_request_timeout=TIMEOUT)).state != QueueState.ACTIVE:
                expect(status.state == QueueState.WAITING, f"{who}: {status.state.value}")
                if time.monotonic() > deadline:
                    raise Failed(f"{who} still WAITING after {ACTIVE_WITHIN:.0f}s: {status}")
                time.sleep(0.2)
        return "cat, dan and eve ACTIVE"

    def browse_grades(self) -> str:
        concerts = ConcertsApi(self.fans["cat"])
        (schedule,) = concerts.list_schedules(self.graded_concert, _request_timeout=TIMEOUT).schedules
        got = [(g.name, g.price, g.first_seat, g.last_seat, g.seat_count, g.available) for g in schedule.grades]
        want = [(n, p, f, la, la - f + 1, la - f + 1) for n, p, f, la in GRADES]
        expect(got == want, f"grades {got}, expected {want}")
        seats = concerts.get_seat_map(self.graded_schedule, _request_timeout=TIMEOUT).seats
        got_seats = [(s.seat_no, s.grade, s.price) for s in seats]
        want_seats = [(n, g, p) for g, p, f, la in GRADES for n in range(f, la + 1)]
        expect(got_seats == want_seats, f"seat map {got_seats}")
        return "schedule grades and per-seat grades as created"

    def order_seats(self) -> str:
        order = OrdersApi(self.fans["cat"]).hold_order(
            OrderRequest(schedule_id=self.graded_schedule, seats=[1, 3]), _request_timeout=TIMEOUT
        )
        expect(order.status == ReservationState.HELD, f"status {order.status}")
        expect((order.concert_id, order.schedule_id) == (self.graded_concert, self.graded_schedule), f"{order}")
        lines = [(s.seat_no, s.grade, s.price) for s in order.seats]
        expect(lines == [(1, "VIP", VIP_PRICE), (3, "R", R_PRICE)], f"seats {lines}")
        expect(order.total == VIP_PRICE + R_PRICE, f"total {order.total}")
        expect(all(s.reservation_id for s in order.seats), f"lines without reservations: {order.seats}")
        expect(order.held_until > datetime.now(timezone.utc), f"heldUntil in the past: {order.held_until}")
        expect(order.refund is None and order.fee is None and order.cancelled_at is None, f"{order}")
        self.cat_order = order
        return f"order {order.id}: seats 1 (VIP) + 3 (R) HELD, total {order.total}"

    def order_overlap(self) -> str:
        orders = OrdersApi(self.fans["dan"])
        p = expect_problem(
            orders.hold_order,
            OrderRequest(schedule_id=self.graded_schedule, seats=[3, 4]),
            raises=(ConflictException, 409, ErrorCode.SEAT_TAKEN),
        )
        expect("3" in (p.detail or ""), f"detail does not name the taken seat: {p.detail!r}")
        seat = ConcertsApi(self.fans["dan"]).get_seat_map(self.graded_schedule, _request_timeout=TIMEOUT).seats[3]
        expect(seat.status == SeatStatus.AVAILABLE, f"all or nothing: seat 4 after the refusal: {seat}")
        return f"409 {p.code.value}: {p.detail}; seat 4 still AVAILABLE"

    def order_by_grade(self) -> str:
        order = OrdersApi(self.fans["dan"]).hold_order(
            OrderRequest(schedule_id=self.graded_schedule, grade="R", quantity=2), _request_timeout=TIMEOUT
        )
        expect(order.status == ReservationState.HELD, f"status {order.status}")
        seats = [s.seat_no for s in order.seats]
        expect(len(seats) == 2 and all(4 <= n <= 8 for n in seats), f"R seats other than 3: {seats}")
        expect(all((s.grade, s.price) == ("R", R_PRICE) for s in order.seats), f"{order.seats}")
        expect(order.total == 2 * R_PRICE, f"total {order.total}")
        self.dan_order = order
        # Eve holds the other VIP seat: the show cancellation releases it below.
        self.eve_order = OrdersApi(self.fans["eve"]).hold_order(
            OrderRequest(schedule_id=self.graded_schedule, seats=[2]), _request_timeout=TIMEOUT
        )
        expect(self.eve_order.status == ReservationState.HELD, f"eve: {self.eve_order}")
        return f"order {order.id}: 2 x R (seats {seats}), total {order.total}; eve holds seat 2"

    def _top_up(self, who: str, amount: int) -> int:
        points = PointsApi(self.fans[who])
        before = points.get_balance(_request_timeout=TIMEOUT).balance
        points.charge_points(str(uuid.uuid4()), ChargeRequest(amount=amount), _request_timeout=TIMEOUT)
        return before + amount

    def pay_order(self) -> str:
        self.cat_balance = self._top_up("cat", self.cat_order.total)
        orders = OrdersApi(self.fans["cat"])
        key = str(uuid.uuid4())
        first = orders.pay_order_with_http_info(
            order_id=self.cat_order.id, idempotency_key=key, _request_timeout=TIMEOUT
        )
        expect(first.status_code == 201, f"status {first.status_code}")
        paid = first.data
        expect((paid.order_id, paid.amount) == (self.cat_order.id, self.cat_order.total), f"payment {paid}")
        expect(paid.balance_after == self.cat_balance - self.cat_order.total, f"balanceAfter {paid.balance_after}")
        retry = orders.pay_order_with_http_info(
            order_id=self.cat_order.id, idempotency_key=key, _request_timeout=TIMEOUT
        )
        expect(_replayed(retry.headers), f"retry not marked Idempotent-Replayed: {retry.headers}")
        expect(retry.data.id == paid.id, f"replay paid again: {retry.data.id} != {paid.id}")
        self.cat_balance = paid.balance_after
        return f"payment {paid.id} of {paid.amount}; same key replayed"

    def read_order(self) -> str:
        orders = OrdersApi(self.fans["cat"])
        order = orders.get_order(self.cat_order.id, _request_timeout=TIMEOUT)
        expect(order.status == ReservationState.CONFIRMED, f"status after payment {order.status}")
        expect([s.seat_no for s in order.seats] == [1, 3], f"seats {order.seats}")
        listed = orders.list_orders(_request_timeout=TIMEOUT).orders
        expect([o.id for o in listed] == [self.cat_order.id], f"cat's orders: {[o.id for o in listed]}")
        seats = ConcertsApi(self.fans["cat"]).get_seat_map(self.graded_schedule, _request_timeout=TIMEOUT).seats
        expect(seats[0].status == seats[2].status == SeatStatus.SOLD, f"seats 1, 3: {seats[0]}, {seats[2]}")
        p = expect_problem(
            OrdersApi(self.fans["dan"]).get_order, self.cat_order.id,
            raises=(NotFoundException, 404, ErrorCode.ORDER_NOT_FOUND),
        )
        return f"CONFIRMED, listed, seats SOLD; someone else's order 404 {p.code.value}"

    def cancel_order(self) -> str:
        orders = OrdersApi(self.fans["cat"])
        key = str(uuid.uuid4())
        total = self.cat_order.total
        fee = total * FEE_PERCENT // 100
        first = orders.cancel_order_with_http_info(
            order_id=self.cat_order.id, idempotency_key=key, _request_timeout=TIMEOUT
        )
        expect(first.status_code == 201, f"status {first.status_code}")
        done = first.data
        expect((done.order_id, done.refund, done.fee) == (self.cat_order.id, total - fee, fee), f"{done}")
        expect(done.balance_after == self.cat_balance + total - fee, f"balanceAfter {done.balance_after}")
        retry = orders.cancel_order_with_http_info(
            order_id=self.cat_order.id, idempotency_key=key, _request_timeout=TIMEOUT
        )
        expect(_replayed(retry.headers), f"retry not marked Idempotent-Replayed: {retry.headers}")
        expect(retry.data == done, f"replay differs: {retry.data} vs {done}")
        order = orders.get_order(self.cat_order.id, _request_timeout=TIMEOUT)
        expect(order.status == ReservationState.CANCELLED, f"status {order.status}")
        expect((order.refund, order.fee) == (total - fee, fee) and order.cancelled_at is not None, f"{order}")
        points = PointsApi(self.fans["cat"])
        balance = points.get_balance(_request_timeout=TIMEOUT).balance
        expect(balance == self.cat_balance + total - fee, f"balance {balance}")
        entries = points.get_points_history(limit=10, _request_timeout=TIMEOUT).entries
        recent = sorted((e.kind.value, e.amount) for e in entries[:2])
        want = sorted([(LedgerKind.REFUND.value, total), (LedgerKind.FEE.value, -fee)])
        expect(recent == want, f"history {recent}, expected {want}")
        p = expect_problem(
            orders.cancel_order, order_id=self.cat_order.id, idempotency_key=str(uuid.uuid4()),
            raises=(ConflictException, 409, ErrorCode.ORDER_CANCELLED),
        )
        return f"refund {done.refund} + fee {done.fee} = {total}; replayed; a new key -> 409 {p.code.value}"

    def cancel_unpaid(self) -> str:
        p = expect_problem(
            OrdersApi(self.fans["dan"]).cancel_order, order_id=self.dan_order.id, idempotency_key=str(uuid.uuid4()),
            raises=(ConflictException, 409, ErrorCode.ORDER_NOT_PAID),
        )
        return f"409 {p.code.value}"

    def show_cancellation(self) -> str:
        # Dan pays his order first: a cancelled show refunds it in full, without a fee.
        dan_balance = self._top_up("dan", self.dan_order.total)
        OrdersApi(self.fans["dan"]).pay_order(
            order_id=self.dan_order.id, idempotency_key=str(uuid.uuid4()), _request_timeout=TIMEOUT
        )
        admin = AdminApi(client(self.app, admin_key=self.admin_key))
        started = admin.cancel_show_with_http_info(self.graded_schedule, _request_timeout=TIMEOUT)
        expect(started.status_code == 202, f"status {started.status_code}")
        expect(started.data.schedule_id == self.graded_schedule, f"{started.data}")
        deadline = time.monotonic() + SHOW_REFUNDED_WITHIN
        while True:
            progress = admin.get_show_cancellation(self.graded_schedule, _request_timeout=TIMEOUT)
            # Dan's paid order is refunded, eve's held one released; cat's was cancelled already.
            expect(progress.orders_refunded <= 1, f"only dan's order is paid and not cancelled: {progress}")
            if progress.orders_to_settle == 0:
                break
            if time.monotonic() > deadline:
                raise Failed(f"not settled after {SHOW_REFUNDED_WITHIN:.0f}s: {progress}")
            time.sleep(0.2)
        expect(progress.orders_refunded == 1, f"settled without refunding dan's order: {progress}")
        again = admin.cancel_show_with_http_info(self.graded_schedule, _request_timeout=TIMEOUT)
        expect(again.status_code == 202, f"again: status {again.status_code}")
        expect((again.data.orders_to_settle, again.data.orders_refunded) == (0, 1), f"again: {again.data}")
        dan = OrdersApi(self.fans["dan"]).get_order(self.dan_order.id, _request_timeout=TIMEOUT)
        expect(dan.status == ReservationState.CANCELLED, f"dan's paid order: {dan.status}")
        expect((dan.refund, dan.fee) == (self.dan_order.total, 0), f"refund in full, no fee: {dan}")
        balance = PointsApi(self.fans["dan"]).get_balance(_request_timeout=TIMEOUT).balance
        expect(balance == dan_balance, f"dan's balance {balance}, expected {dan_balance} (all back)")
        eve = OrdersApi(self.fans["eve"]).get_order(self.eve_order.id, _request_timeout=TIMEOUT)
        expect(eve.status == ReservationState.RELEASED, f"eve's held order: {eve.status}")
        p = expect_problem(
            OrdersApi(self.fans["eve"]).hold_order,
            OrderRequest(schedule_id=self.graded_schedule, grade="R", quantity=1),
            raises=(ConflictException, 409, ErrorCode.SHOW_CANCELLED),
        )
        return f"dan refunded {dan.refund} in full, eve's hold RELEASED, a new order 409 {p.code.value}"


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
    run.step("spec: each operation's own answers, as the app's spec lists them", run.operation_maps, critical=False)
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
    run.step("hold: bob, same seat -> 409 SEAT_TAKEN, typed by hold_seat's map", run.seat_taken, critical=False)
    run.step("points: charge with Idempotency-Key", run.charge)
    run.step("pay: with Idempotency-Key", run.pay)
    run.step("pay: new key -> 409 ALREADY_PAID, typed by pay_reservation's map", run.already_paid, critical=False)
    run.step("points: balance down by the price", run.balance_after, critical=False)
    run.step("errors: invalid calls are typed 4xx with a code", run.invalid_calls, critical=False)
    run.step("queue: leave ends the token", run.leave, critical=False)

    # Orders: a fresh concert and fans, so a failure above does not skip them.
    run.skipping = False
    run.step("admin: create concert with grades and a cancellation policy", run.create_graded_concert)
    run.step("orders: three users join and become ACTIVE", run.join_graded)
    run.step("browse: grades on the schedule and the seat map", run.browse_grades, critical=False)
    run.step("orders: cat orders two seats (VIP + R)", run.order_seats)
    run.step("orders: dan, overlapping seats -> 409 SEAT_TAKEN, nothing held", run.order_overlap, critical=False)
    run.step("orders: dan orders two R by grade; eve one VIP", run.order_by_grade)
    run.step("orders: pay with Idempotency-Key", run.pay_order)
    run.step("orders: read it, list it; someone else's -> 404", run.read_order, critical=False)
    run.step("orders: cancel (refund less the fee), replay, new key -> 409", run.cancel_order, critical=False)
    run.step("orders: cancel an unpaid order -> 409 ORDER_NOT_PAID", run.cancel_unpaid, critical=False)
    run.step("admin: cancel the show: refunds in full, releases holds", run.show_cancellation, critical=False)

    if run.failures:
        print(f"FAIL sdk e2e: {run.failures} step(s) failed")
        return 1
    print("PASS sdk e2e: all steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
