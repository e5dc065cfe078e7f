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
BASE=${BASE:-28080}     # target on BASE, proxies on BASE+1..BASE+5
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

waitport() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# ticks PID...: utime+stime, in clock ticks, of the processes and their
# children (nginx's and HAProxy's workers).
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
        sum=$((sum + ${12} + ${13}))
      fi
    done
  done
  echo "$sum"
}

"$tmp/bench" -mode target -listen "127.0.0.1:$BASE" & pids+=($!)
waitport "$BASE"

hz=$(getconf CLK_TCK)
printf '%-15s %10s %9s %9s %14s\n' proxy "req/s" p50 p99 "cpu µs/req"

measure() { # name port pid
  local name=$1 port=$2 pid=$3
  waitport "$port"
  wrk -t"$THREADS" -c"$CONNS" -d"${WARM}s" "http://127.0.0.1:$port/" >/dev/null
  local t0 t1 out
  t0=$(ticks "$pid")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$port/")
  t1=$(ticks "$pid")
  echo "$out" > "$tmp/wrk-$name.txt"
  local rps reqs p50 p99 errs
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)
  local cpu
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
  printf '%-15s %10s %9s %9s %14s\n' "$name" "$rps" "$p50" "$p99" "$cpu"
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

run lbkit $((BASE + 1)) "$tmp/bench" -mode lbkit -listen "127.0.0.1:$((BASE + 1))" -target "127.0.0.1:$BASE"
run httputil $((BASE + 2)) "$tmp/bench" -mode httputil -listen "127.0.0.1:$((BASE + 2))" -target "127.0.0.1:$BASE"
run httputil-pool $((BASE + 3)) "$tmp/bench" -mode httputil-pool -listen "127.0.0.1:$((BASE + 3))" -target "127.0.0.1:$BASE"

mkdir -p "$tmp/nginx"
cat > "$tmp/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 2;
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
  upstream target { server 127.0.0.1:$BASE; keepalive 512; }
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
run nginx $((BASE + 4)) nginx -c "$tmp/nginx.conf" -e "$tmp/nginx/error.log"

cat > "$tmp/haproxy.cfg" <<CONF
global
  nbthread 2
  maxconn 4096
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
  server t 127.0.0.1:$BASE
CONF
run haproxy $((BASE + 5)) haproxy -db -f "$tmp/haproxy.cfg"
