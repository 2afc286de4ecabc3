"""Hostile inputs against a gateway binary, for before/after figures (loopback only, bounded):

  hostile.py flood BIN PORT health|metrics
      starts BIN --dev under `ulimit -n 256` with the health or metrics port on 127.0.0.1:PORT,
      opens 300 idle sockets to it, reports the gateway's CPU over the next 5 s and whether a probe
      (a grpcurl health check, or a scrape) gets through while the sockets are held.
  hostile.py answer BIN huge|endless
      starts BIN with a credentials URI that answers 100 MB, or never ends, and reports how long the
      start took to fail and the peak RSS on the way.
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HEALTH_PROTO = """syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse { enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; } ServingStatus status = 1; }
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
"""


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood(binary, port, kind):
    flag = {"health": "--health-listen", "metrics": "--metrics-listen"}[kind]
    gateway = subprocess.Popen(
        ["bash", "-c", f'ulimit -n 256; exec "$0" "$@"', binary, "--dev", "--listen", "127.0.0.1:0",
         flag, f"127.0.0.1:{port}", "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    sockets = []
    for _ in range(300):
        try:
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=1))
        except OSError:
            pass
    before = cpu_seconds(gateway.pid)
    time.sleep(5)
    cpu = (cpu_seconds(gateway.pid) - before) / 5
    if kind == "health":
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(f"{d}/grpc/health/v1")
            open(f"{d}/grpc/health/v1/health.proto", "w").write(HEALTH_PROTO)
            r = subprocess.run(["grpcurl", "-import-path", d, "-proto", "grpc/health/v1/health.proto",
                                "-plaintext", "-max-time", "2", f"127.0.0.1:{port}",
                                "grpc.health.v1.Health/Check"], capture_output=True, text=True)
        probe = "SERVING" if r.returncode == 0 else r.stderr.strip()[:80]
    else:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.settimeout(2)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            head = c.recv(20).decode(errors="replace")
            probe = head.splitlines()[0] if head else "closed at once (at the cap)"
        except OSError as e:
            probe = repr(e)
    print(f"{kind}: {len(sockets)} idle sockets, CPU {cpu:.0%} over 5 s, probe while held: {probe}")
    gateway.kill()


def answer(binary, mode):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]

    def respond(c):
        try:
            c.recv(4096)
            chunk = b"x" * 65536
            if mode == "endless":
                c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n")
                while True:
                    c.sendall(chunk)
            size = 100 * 1024 * 1024
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
            for _ in range(size // len(chunk)):
                c.sendall(chunk)
        except OSError:
            pass

    def serve():
        while True:
            c, _ = server.accept()
            threading.Thread(target=respond, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    env = dict(os.environ, ALIBABA_CLOUD_CREDENTIALS_URI=f"http://127.0.0.1:{port}/c",
               ALIBABA_CLOUD_ECS_METADATA_DISABLED="true", HOME="/nonexistent")
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        env.pop(name, None)
    started = time.time()
    gateway = subprocess.Popen([binary, "--endpoint", "http://127.0.0.1:9/", "--listen", "127.0.0.1:0"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while gateway.poll() is None and time.time() - started < 15:
        try:
            status = open(f"/proc/{gateway.pid}/status").read()
            peak = max(peak, int(status.split("VmHWM:")[1].split()[0]) // 1024)
        except (OSError, IndexError):
            pass
        time.sleep(0.05)
    gateway.kill()
    shown = f"{peak} MiB" if peak else "not sampled before it exited"
    print(f"{mode}: start failed after {time.time() - started:.1f} s, peak RSS {shown}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "flood":
        flood(args[0], int(args[1]), args[2])
    else:
        answer(*args)
