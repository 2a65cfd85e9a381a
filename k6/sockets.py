#!/usr/bin/env python3
"""10,000 waiting sockets on one instance: the app's memory, and how fast a move reaches all.

    python3 k6/sockets.py --app-pid PID [--base http://127.0.0.1:18090] [--users 10000]
                          [--idle 30] [--connect-concurrency 200] [--json k6/out/sockets.json]

Normally started by `k6/bench-ceilings --only sockets`, which runs the app with
BOXOFFICE_QUEUE_CAPACITY=1, BOXOFFICE_QUEUE_ADMIT_RATE=1, BOXOFFICE_QUEUE_TICK_MS=100
and BOXOFFICE_QUEUE_ADMISSION=true. Steps:

1. create a concert; join a "head" user and wait until the head is ACTIVE (capacity 1:
   nobody else gets in while the head's turn lasts);
2. join --users fresh users (positions 1..N behind the head) over keep-alive HTTP;
3. read the app's VmRSS, open one WebSocket per user (GET /v1/queue/ws?token=) and wait
   for each one's first message (`position`); read VmRSS with all open, then again after
   --idle seconds of silence (the server pings every 20 s; the client answers pongs);
4. end the head's token (DELETE /v1/queue/tokens/current) so the next tick admits #1
   and everyone else moves up one: time from just before the DELETE until EVERY socket
   got its new position (or `admitted`, for #1);
5. close the sockets and read VmRSS once more.

Needs the `websockets` package (pip install websockets). Prints a summary and writes
all figures as JSON to --json.
"""

import argparse
import asyncio
import http.client
import json
import os
import resource
import sys
import threading
import time
import urllib.parse

import websockets


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="http://127.0.0.1:18090")
    p.add_argument("--admin-key", default="bench-admin")
    p.add_argument("--app-pid", type=int, required=True)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--idle", type=float, default=30.0)
    p.add_argument("--connect-concurrency", type=int, default=200)
    p.add_argument("--join-threads", type=int, default=4)
    p.add_argument("--update-timeout", type=float, default=30.0)
    p.add_argument("--run-id", default=str(int(time.time())))
    p.add_argument("--json", default=None)
    p.add_argument("--cgroup-usage", default=None,
                   help="the app cgroup's cpuacct.usage (ns): sampled every 2 ms while the move spreads")
    return p.parse_args()


def proc_status(pid, field):
    """A kB field of /proc/<pid>/status, in MB (None if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Http:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def call(self, method, path, body=None, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=h)
                res = self.conn.getresponse()
                raw = res.read()
                return res.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def join_many(base, concert, user_ids, threads):
    """Joins every user; returns [(user, token, position)] in the order given."""
    results = [None] * len(user_ids)
    errors = []

    def work(idx):
        c = Http(base)
        for i in idx:
            status, body = c.call("POST", "/v1/queue/tokens", {"concertId": concert, "userId": user_ids[i]})
            if status != 201 or not body or body.get("state") != "WAITING":
                errors.append((user_ids[i], status, body))
                continue
            results[i] = (user_ids[i], body["token"], body["position"])

    chunks = [list(range(k, len(user_ids), threads)) for k in range(threads)]
    ts = [threading.Thread(target=work, args=(ch,)) for ch in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results, errors


class Socket:
    __slots__ = ("token", "ws", "first", "first_at", "updated_at", "update", "closed", "close_code", "extra",
                 "live")

    def __init__(self, token):
        self.token = token
        self.ws = None
        self.live = False  # open and positioned when the DELETE went out
        self.first = None  # the first message (dict)
        self.first_at = None
        self.updated_at = None  # when the move after the DELETE arrived
        self.update = None
        self.closed = False
        self.close_code = None
        self.extra = 0  # messages before the DELETE beyond the first


class Bench:
    def __init__(self, args, ws_base, tokens):
        self.args = args
        self.ws_base = ws_base
        self.socks = [Socket(t) for t in tokens]
        self.t0 = None  # monotonic, just before the DELETE
        self.pending = len(tokens)
        self.all_updated = asyncio.Event()
        self.stop = asyncio.Event()
        self.connect_failures = []
        self.first_timeouts = 0
        self.connected = 0
        self.all_connected = asyncio.Event()

    async def follow(self, s, gate):
        url = f"{self.ws_base}/v1/queue/ws?token={s.token}"
        try:
            async with gate:
                ws = await websockets.connect(
                    url, ping_interval=None, compression=None, open_timeout=30,
                    close_timeout=2, max_queue=4, max_size=4096,
                )
                s.ws = ws
                try:
                    raw = await asyncio.wait_for(ws.recv(), 30)
                except asyncio.TimeoutError:
                    self.first_timeouts += 1
                    await ws.close()
                    return
                s.first = json.loads(raw)
                s.first_at = time.monotonic()
        except Exception as e:  # noqa: BLE001 - counted and reported
            self.connect_failures.append(f"{type(e).__name__}: {e}")
            return
        finally:
            self.connected += 1
            if self.connected == len(self.socks):
                self.all_connected.set()
        try:
            async for raw in ws:
                now = time.monotonic()
                msg = json.loads(raw)
                if self.t0 is None:
                    s.extra += 1
                    continue
                if s.updated_at is None and s.live and self.moved(s, msg):
                    s.updated_at, s.update = now, msg
                    self.pending -= 1
                    if self.pending == 0:
                        self.all_updated.set()
        except websockets.ConnectionClosed:
            pass
        if not self.stop.is_set():
            s.closed = True
            s.close_code = ws.close_code

    @staticmethod
    def moved(s, msg):
        if msg.get("type") == "admitted":
            return True
        first = s.first.get("position") if s.first else None
        return msg.get("type") == "position" and first is not None and msg.get("position", first) < first


class CpuSampler(threading.Thread):
    """Samples the app cgroup's CPU usage every 2 ms, to tell the app's work from the client's."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.samples, self.halt = path, [], threading.Event()

    def read(self):
        with open(self.path) as f:
            return int(f.read())

    def run(self):
        while not self.halt.is_set():
            self.samples.append((time.monotonic(), self.read()))
            time.sleep(0.002)

    def stop(self):
        self.halt.set()
        self.join()

    def report(self, t0, result):
        """App CPU (ms) in 50 ms buckets from the DELETE, and until when the app was busy."""
        s = [(t, u) for t, u in self.samples if t >= t0 - 0.01]
        if len(s) < 2:
            return
        base = s[0][1]
        total = s[-1][1] - base
        buckets = {}
        prev = s[0]
        for t, u in s[1:]:
            b = int((t - t0) * 20)
            buckets[b] = buckets.get(b, 0) + (u - prev[1])
            prev = (t, u)
        n = max(buckets) + 1 if buckets else 0
        result["app_cpu_ms_per_50ms_after_delete"] = [round(buckets.get(i, 0) / 1e6, 1) for i in range(n)]
        result["app_cpu_ms_after_delete"] = round(total / 1e6, 1)
        # the end of the last 50 ms bucket still busy (>= 20% of the busiest one): after
        # that the app only does its background work (ticks, keep-alives)
        per = result["app_cpu_ms_per_50ms_after_delete"]
        peak = max(per) if per else 0
        busy = [i for i, v in enumerate(per) if peak and v >= 0.2 * peak]
        result["app_busy_until_ms"] = (busy[-1] + 1) * 50 if busy else None


def percentile(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]


async def sockets_phase(args, concert, head_token, joined, result):
    pid = args.app_pid
    u = urllib.parse.urlsplit(args.base)
    ws_base = f"ws://{u.hostname}:{u.port or 80}"
    bench = Bench(args, ws_base, [t for _, t, _ in joined])
    # Closures below keep socket objects alive; the tasks are the sockets.
    gate = asyncio.Semaphore(args.connect_concurrency)

    result["app_rss_mb_before_sockets"] = proc_status(pid, "VmRSS")
    result["app_fds_before_sockets"] = open_fds(pid)
    t_conn = time.monotonic()
    tasks = [asyncio.create_task(bench.follow(s, gate)) for s in bench.socks]
    await bench.all_connected.wait()
    opened = sum(1 for s in bench.socks if s.first is not None)
    result["connect_seconds"] = round(time.monotonic() - t_conn, 2)
    result["sockets_opened"] = opened
    result["connect_failures"] = len(bench.connect_failures)
    result["connect_failure_samples"] = sorted(set(bench.connect_failures))[:5]
    result["first_message_timeouts"] = bench.first_timeouts
    bad_first = [s.first for s in bench.socks if s.first is not None and s.first.get("type") != "position"]
    result["first_message_not_position"] = len(bad_first)
    mism = sum(
        1 for (_, _, pos), s in zip(joined, bench.socks)
        if s.first is not None and s.first.get("position") != pos
    )
    result["first_position_differs_from_join"] = mism
    result["app_rss_mb_all_open"] = proc_status(pid, "VmRSS")
    result["app_fds_all_open"] = open_fds(pid)
    print(f"  {opened}/{len(bench.socks)} sockets open in {result['connect_seconds']} s; "
          f"app VmRSS {result['app_rss_mb_before_sockets']} -> {result['app_rss_mb_all_open']} MB", flush=True)

    await asyncio.sleep(args.idle)
    result["idle_seconds"] = args.idle
    result["app_rss_mb_after_idle"] = proc_status(pid, "VmRSS")
    result["app_hwm_mb_after_idle"] = proc_status(pid, "VmHWM")
    dropped = [s for s in bench.socks if s.closed]
    result["dropped_during_idle"] = len(dropped)
    result["dropped_close_codes"] = sorted({str(s.close_code) for s in dropped})
    result["messages_during_idle"] = sum(s.extra for s in bench.socks)
    print(f"  after {args.idle:.0f} s idle: app VmRSS {result['app_rss_mb_after_idle']} MB, "
          f"{len(dropped)} dropped, {result['messages_during_idle']} unexpected messages", flush=True)

    # Only sockets that are open and saw a position take part in the timing.
    live = [s for s in bench.socks if s.first is not None and not s.closed]
    for s in live:
        s.live = True
    bench.pending = len(live)
    loop = asyncio.get_running_loop()
    sampler = CpuSampler(args.cgroup_usage) if args.cgroup_usage else None
    if sampler:
        sampler.start()
    bench.t0 = time.monotonic()
    status, _ = await loop.run_in_executor(
        None, lambda: Http(args.base).call(
            "DELETE", "/v1/queue/tokens/current", headers={"Authorization": f"Bearer {head_token}"}))
    t_deleted = time.monotonic()
    result["delete_status"] = status
    result["delete_ms"] = round((t_deleted - bench.t0) * 1000, 2)
    try:
        await asyncio.wait_for(bench.all_updated.wait(), args.update_timeout)
    except asyncio.TimeoutError:
        pass
    if sampler:
        await asyncio.sleep(0.3)  # see the app's CPU settle after the last update
        sampler.stop()
        sampler.report(bench.t0, result)
    got = [s for s in live if s.updated_at is not None]
    lat = [(s.updated_at - bench.t0) * 1000 for s in got]
    first = min(lat) if lat else None
    result["sockets_timed"] = len(live)
    result["sockets_updated"] = len(got)
    result["update_ms_first"] = round(first, 1) if first is not None else None
    result["update_ms_p50"] = round(percentile(lat, 0.50), 1) if lat else None
    result["update_ms_p99"] = round(percentile(lat, 0.99), 1) if lat else None
    result["update_ms_all"] = round(max(lat), 1) if lat and len(got) == len(live) else None
    result["update_ms_max_seen"] = round(max(lat), 1) if lat else None
    result["update_spread_ms_first_to_last"] = round(max(lat) - first, 1) if lat else None
    admitted = [s for s in got if s.update.get("type") == "admitted"]
    result["admitted_messages"] = len(admitted)
    wrong = 0
    for (_, _, pos), s in zip(joined, bench.socks):
        if s.live and s.update is not None and s.update.get("type") == "position" and s.update.get("position") != s.first.get("position") - 1:
            wrong += 1
    result["updates_not_position_minus_one"] = wrong
    result["app_rss_mb_after_update"] = proc_status(pid, "VmRSS")
    print(f"  DELETE head -> {status} in {result['delete_ms']} ms; {len(got)}/{len(live)} sockets updated; "
          f"first {result['update_ms_first']} ms, P50 {result['update_ms_p50']} ms, "
          f"P99 {result['update_ms_p99']} ms, all {result['update_ms_all']} ms", flush=True)

    bench.stop.set()
    t_close = time.monotonic()
    await asyncio.gather(*(s.ws.close() for s in bench.socks if s.ws is not None), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    result["client_close_seconds"] = round(time.monotonic() - t_close, 2)


def main():
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile < args.users + 100:
        sys.exit(f"sockets.py: open-files limit {nofile} is below {args.users} sockets")

    result = {"users": args.users, "client_nofile": nofile, "app_pid": args.app_pid,
              "app_nofile": None}
    try:
        with open(f"/proc/{args.app_pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    result["app_nofile"] = int(line.split()[3])
    except OSError:
        pass
    http0 = Http(args.base)
    status, body = http0.call(
        "POST", "/v1/admin/concerts",
        {"title": "Q", "artist": "A", "schedules": [
            {"venue": "Hall", "startsAt": "2027-01-01T19:00:00Z", "seatCount": 50, "price": 1000}]},
        headers={"X-Api-Key": args.admin_key})
    if status != 201:
        sys.exit(f"sockets.py: creating the concert: {status} {body}")
    concert = body["concertId"]
    result["concert_id"] = concert

    status, body = http0.call("POST", "/v1/queue/tokens", {"concertId": concert, "userId": f"head-{args.run_id}"})
    if status != 201:
        sys.exit(f"sockets.py: joining the head: {status} {body}")
    head = body["token"]
    deadline = time.monotonic() + 15
    while True:
        status, body = http0.call("GET", "/v1/queue/tokens/current", headers={"Authorization": f"Bearer {head}"})
        if status == 200 and body.get("state") == "ACTIVE":
            break
        if time.monotonic() > deadline:
            sys.exit(f"sockets.py: the head was not admitted within 15 s (is BOXOFFICE_QUEUE_ADMISSION=true?): {status} {body}")
        time.sleep(0.1)
    print(f"  concert {concert}: head admitted (ACTIVE)", flush=True)

    users = [f"ws{args.run_id}-{i}" for i in range(args.users)]
    t = time.monotonic()
    joined, errors = join_many(args.base, concert, users, args.join_threads)
    result["join_seconds"] = round(time.monotonic() - t, 2)
    result["join_errors"] = len(errors)
    if errors:
        print(f"  join errors: {len(errors)}, e.g. {errors[:3]}", flush=True)
    joined = [j for j in joined if j is not None]
    positions = sorted(p for _, _, p in joined)
    result["positions"] = [positions[0], positions[-1]] if positions else None
    print(f"  joined {len(joined)} users in {result['join_seconds']} s (positions {result['positions']})", flush=True)

    asyncio.run(sockets_phase(args, concert, head, joined, result))

    time.sleep(2)
    result["app_rss_mb_after_close"] = proc_status(args.app_pid, "VmRSS")
    result["app_fds_after_close"] = open_fds(args.app_pid)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    result["client_cpu_seconds"] = round(ru.ru_utime + ru.ru_stime, 1)
    result["client_maxrss_mb"] = round(ru.ru_maxrss / 1024, 1)
    result["app_alive"] = os.path.exists(f"/proc/{args.app_pid}")
    print(f"  after closing: app VmRSS {result['app_rss_mb_after_close']} MB; "
          f"client CPU {result['client_cpu_seconds']} s, client max RSS {result['client_maxrss_mb']} MB", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    ok = (result["sockets_opened"] == args.users and result["dropped_during_idle"] == 0
          and result["sockets_updated"] == result["sockets_timed"] and result["join_errors"] == 0)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
