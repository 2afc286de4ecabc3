#!/usr/bin/env bash
# RSS per idle connection and time from SIGTERM to exit with those connections still open.
# Starts the release gateway (--dev) on 127.0.0.1:50091, opens N idle TCP connections (never
# sending the HTTP/2 preface), samples VmRSS before and after, then sends SIGTERM and times the exit.
# Usage: bench/idle-connections.sh [N] [BINARY]   (default 2000 and this tree's release build;
# pass another build's binary to compare in the same run; stays on 127.0.0.1, stops by itself)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
bin=${2:-}
if [ -z "$bin" ]; then
    cargo build --release --locked --quiet
    bin=./target/release/ecs-gateway
fi
"$bin" --dev --listen 127.0.0.1:50091 >/dev/null 2>&1 &
gw=$!
trap 'kill -9 $gw 2>/dev/null || true' EXIT
sleep 1
python3 - "$gw" "$n" <<'PY'
import socket, sys, time, os, signal

pid, n = int(sys.argv[1]), int(sys.argv[2])

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

before = rss_kib()
sockets = [socket.create_connection(("127.0.0.1", 50091)) for _ in range(n)]
time.sleep(1)
after = rss_kib()
start = time.monotonic()
os.kill(pid, signal.SIGTERM)
def alive():
    try:
        # A zombie has exited; its parent (the shell) has not reaped it yet.
        return not open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return False

while alive():
    time.sleep(0.001)
took = time.monotonic() - start
print(f"connections {n}: RSS {before/1024:.1f} -> {after/1024:.1f} MiB, "
      f"{(after-before)/n:.1f} KiB per idle connection; exit {took*1000:.0f} ms after SIGTERM")
PY
