#!/usr/bin/env bash
# Side-by-side HTTP proxy benchmark on 127.0.0.1 only: wrk drives lbkit's
# HTTP proxy, a plain httputil.ReverseProxy (as Go ships it, and with a
# keep-alive pool and buffer pool), nginx and HAProxy, each in front of the
# same Go target answering 100 bytes, at 64 connections. For each it prints
# requests/s, p50/p99 latency and the proxy's CPU per request (utime+stime of
# its processes from /proc, before and after the measured run).
#
#   bash examples/bench/http/run.sh            # from the repository root
#   DUR=5 CONNS=64 bash examples/bench/http/run.sh
#
# Every process it starts is killed on exit; every run is bounded by DUR.
set -euo pipefail

DUR=${DUR:-10}          # seconds measured per proxy
WARM=${WARM:-2}         # seconds of warm-up per proxy, not measured
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
CORES=${CORES:-$(nproc)} # GOMAXPROCS, nginx workers, HAProxy threads
SIZE=${SIZE:-100}       # response body bytes
TARGETS=${TARGETS:-2}   # Go targets behind every proxy
ROUNDS=${ROUNDS:-1}     # rounds of every proxy, interleaved; medians printed
BASE=${BASE:-28080}     # targets on BASE+10.., proxies on BASE+1..BASE+8
ONLY=${ONLY:-}          # e.g. ONLY="lbkit nginx"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need haproxy; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
    apt-get install -y wrk nginx haproxy >/dev/null
  else
    echo "needs wrk, nginx and haproxy (apt-get install -y wrk nginx haproxy)" >&2
    exit 1
  fi
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/bench" ./examples/bench/http
(cd examples/bench/http/fasthttp && go build -o "$tmp/fasthttp" .) # a module of its own
go build -o "$tmp/epollexp" ./examples/bench/http/epollexp

waitport() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# ticks PID...: utime+stime, in clock ticks, of the processes and their
# children (nginx's and HAProxy's workers); with FIELD=user or FIELD=sys,
# utime or stime alone.
ticks() {
  local sum=0 p c
  for p in "$@"; do
    for c in $p $(pgrep -P "$p" || true); do
      if [ -r "/proc/$c/stat" ]; then
        # Fields after the command name (which may hold spaces): utime is
        # the 12th, stime the 13th.
        local rest
        rest=$(sed 's/^.*) //' "/proc/$c/stat")
        set -- $rest
        case "${FIELD:-}" in
          user) sum=$((sum + ${12})) ;;
          sys) sum=$((sum + ${13})) ;;
          *) sum=$((sum + ${12} + ${13})) ;;
        esac
      fi
    done
  done
  echo "$sum"
}

targets=()
for i in $(seq 0 $((TARGETS - 1))); do
  port=$((BASE + 10 + i))
  GOMAXPROCS=$CORES "$tmp/bench" -mode target -size "$SIZE" -listen "127.0.0.1:$port" & pids+=($!)
  waitport "$port"
  targets+=("127.0.0.1:$port")
done
tlist=$(IFS=,; echo "${targets[*]}")

hz=$(getconf CLK_TCK)
echo "# $(date -u +%FT%TZ) $(go version | cut -d' ' -f3) nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "# wrk -t$THREADS -c$CONNS -d${DUR}s; cores=$CORES size=$SIZE targets=$TARGETS rounds=$ROUNDS"
printf '%-15s %10s %9s %9s %14s %14s\n' proxy "req/s" p50 p99 "cpu µs/req" "of it user/sys"
results="$tmp/results"
: > "$results"

measure() { # name port pid
  local name=$1 port=$2 pid=$3
  waitport "$port"
  wrk -t"$THREADS" -c"$CONNS" -d"${WARM}s" "http://127.0.0.1:$port/" >/dev/null
  local t0 t1 out
  t0=$(ticks "$pid")
  local u0 u1
  u0=$(FIELD=user ticks "$pid")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$port/")
  t1=$(ticks "$pid")
  u1=$(FIELD=user ticks "$pid")
  echo "$out" > "$tmp/wrk-$name.txt"
  local rps reqs p50 p99 errs
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)
  local cpu
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
  local usr sys
  usr=$(awk -v d=$((u1 - u0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
  sys=$(awk -v d=$((t1 - t0 - u1 + u0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
  printf '%-15s %10s %9s %9s %14s %14s\n' "$name" "$rps" "$p50" "$p99" "$cpu" "$usr/$sys"
  echo "$name $rps $p50 $p99 $cpu" >> "$results"
  if [ -n "$errs" ]; then echo "  $name: $errs"; fi
}

run() { # name port command...
  local name=$1 port=$2
  shift 2
  if [ -n "$ONLY" ] && ! [[ " $ONLY " == *" $name "* ]]; then return; fi
  "$@" & local pid=$!
  pids+=($pid)
  measure "$name" "$port" "$pid"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

mkdir -p "$tmp/nginx"
cat > "$tmp/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes $CORES;
pid $tmp/nginx.pid;
error_log $tmp/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  upstream target {
$(for t in "${targets[@]}"; do echo "    server $t;"; done)
    keepalive 512;
  }
  server {
    listen 127.0.0.1:$((BASE + 4));
    location / {
      proxy_pass http://target;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF

cat > "$tmp/haproxy.cfg" <<CONF
global
  nbthread $CORES
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:$((BASE + 5))
  default_backend b
backend b
  http-reuse always
$(i=0; for t in "${targets[@]}"; do echo "  server t$i $t"; i=$((i + 1)); done)
CONF

for round in $(seq 1 "$ROUNDS"); do
  [ "$ROUNDS" -gt 1 ] && echo "# round $round"
  run lbkit $((BASE + 1)) env GOMAXPROCS="$CORES" "$tmp/bench" -mode lbkit -listen "127.0.0.1:$((BASE + 1))" -target "$tlist"
  run lbkit-loop $((BASE + 8)) env GOMAXPROCS="$CORES" "$tmp/bench" -mode lbkit-loop -listen "127.0.0.1:$((BASE + 8))" -target "$tlist"
  run httputil-pool $((BASE + 3)) env GOMAXPROCS="$CORES" "$tmp/bench" -mode httputil-pool -listen "127.0.0.1:$((BASE + 3))" -target "$tlist"
  run fasthttp $((BASE + 6)) env GOMAXPROCS="$CORES" "$tmp/fasthttp" -listen "127.0.0.1:$((BASE + 6))" -target "$tlist"
  run nginx $((BASE + 4)) nginx -c "$tmp/nginx.conf" -e "$tmp/nginx/error.log"
  run haproxy $((BASE + 5)) haproxy -db -f "$tmp/haproxy.cfg"
  # The event-loop measurement (epollexp/doc.go): small answers only.
  if [ "$SIZE" -le 3000 ]; then
    run epollexp $((BASE + 7)) env GOMAXPROCS="$CORES" "$tmp/epollexp" -listen "127.0.0.1:$((BASE + 7))" -target "$tlist"
  fi
done

if [ "$ROUNDS" -gt 1 ]; then
  echo "# medians of $ROUNDS rounds"
  for name in lbkit lbkit-loop httputil-pool fasthttp nginx haproxy epollexp; do
    grep "^$name " "$results" | sort -k2 -n | awk -v n="$name" '{a[NR]=$0} END {if (NR) {split(a[int((NR+1)/2)], f, " "); printf "%-15s %10s (median req/s)\n", n, f[2]}}'
    grep "^$name " "$results" | sort -k5 -n | awk '{a[NR]=$5} END {if (NR) printf "%-15s %10s (median cpu µs/req)\n", "", a[int((NR+1)/2)]}'
  done
fi
