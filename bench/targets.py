"""Reads one bench/run.sh results file: a row per server (CPU per call × bare and × forwarder), and
the targets of issues 12 and 26, each measured and pass/fail.

Usage: python3 bench/targets.py RESULTS.jsonl N_C1 N_C50 ROUNDS N_GHZ
Medians are over the rounds of one run; every ratio compares rows of the same run.
"""

import json
import statistics
import sys

WARMUP = 200  # calls ecs-gateway-load sends before it measures (its --warmup default)


def main():
    path, n1, n50, rounds, nghz = sys.argv[1], *map(int, sys.argv[2:])
    rows = [json.loads(line) for line in open(path)]
    by = {}
    for row in rows:
        by.setdefault(row.get("label"), []).append(row)

    def med(label, key):
        return statistics.median(r[key] for r in by[label])

    failed_calls = [
        r["label"] for r in rows if "codes" in r and set(r["codes"]) - {"Ok", "OK"}
    ]
    checks = []

    def check(name, measured, limit, ok):
        checks.append({"target": name, "measured": measured, "limit": limit, "pass": ok})

    # Issue 26: the floor is the forwarder over the same transport (the JSON and warn gateways
    # forward over plain HTTP; HTTP/1.1 over TLS has no forwarder of its own, so no target).
    floor = {"http": "fwd-http", "json": "fwd-http", "warn": "fwd-http", "tls": "fwd-tls"}
    bare_cpu = med("bare-c50", "server_cpu_us_per_call")
    table = []
    for up in ("fwd-http", "fwd-tls", "http", "json", "warn", "tls", "tls-h1"):
        cpu = med(f"{up}-c50", "server_cpu_us_per_call")
        row = {"server": up, "cpu_us_per_call_c50": cpu, "x_bare": round(cpu / bare_cpu, 2),
               "rps_c50": round(med(f"{up}-c50", "rps")), "p50_us_c1": med(f"{up}-c1", "p50_us"),
               "peak_rss_mib": max(r["server_peak_rss_mib"] for r in by[f"{up}-c50"])}
        if up in floor:
            row["x_forwarder"] = round(cpu / med(f"{floor[up]}-c50", "server_cpu_us_per_call"), 2)
        table.append(row)
    for up in ("http", "json", "tls"):
        fwd = med(f"{floor[up]}-c50", "server_cpu_us_per_call")
        cpu = med(f"{up}-c50", "server_cpu_us_per_call")
        ratio = round(cpu / fwd, 2)
        check(f"cpu/call c=50 {up} vs {floor[up]} ({cpu} / {fwd} us)", ratio, 1.10, ratio <= 1.10)
    for up in ("http", "tls"):
        p50, fwd_p50 = med(f"{up}-c1", "p50_us"), med(f"{floor[up]}-c1", "p50_us")
        check(f"c=1 p50 {up} (us; {floor[up]} {fwd_p50} + 30)", p50, fwd_p50 + 30, p50 <= fwd_p50 + 30)
    for up in ("http", "tls"):
        p99 = med(f"{up}-c1", "p99_us")
        check(f"c=1 p99 {up} (us)", p99, 999, p99 < 1000)
    if "ghz-bare" in by:
        bare_rps = med("ghz-bare", "rps")
        for up in ("http", "tls"):
            rps = med(f"ghz-{up}", "rps")
            ratio = round(rps / bare_rps, 3)
            check(f"ghz c=50 calls/s {up} vs bare ({rps} / {bare_rps})", ratio, 0.85, ratio >= 0.85)
    for up in ("http", "json", "tls"):
        label = f"ghz-{up}" if f"ghz-{up}" in by else f"{up}-c50"
        rss = max(r["server_peak_rss_mib"] for r in by[label])
        check(f"peak RSS {up} (MiB, whole run)", rss, 20, rss <= 20)
    start = by[None][0]["start_to_serving_ms"] if None in by else None
    check("start to SERVING (ms)", round(start, 1), 50, start is not None and start <= 50)
    per_gateway = rounds * (n1 + WARMUP + n50 + WARMUP)
    for up in ("http", "tls", "tls-h1", "json"):
        audit = by[f"audit-{up}"][0]
        want = per_gateway + (rounds * nghz if up in ("http", "tls") and "ghz-bare" in by else 0)
        ok = audit["finished"] == want and audit["ends_with_newline"]
        check(f"audit lines {up} (one per call)", audit["finished"], want, ok)
    warn = med("warn-c50", "server_cpu_us_per_call")
    summary = {
        "summary": "issue 12 and 26 targets",
        "servers": table,
        "all_pass": all(c["pass"] for c in checks) and not failed_calls,
        "calls_not_ok_in": failed_calls,
        "log_cost_us_per_call_c50": round(med("http-c50", "server_cpu_us_per_call") - warn, 1),
        "checks": checks,
        "upstream_connections": {
            label[len("connections-"):]: [r["upstream_connections"] for r in rows_]
            for label, rows_ in by.items()
            if label and label.startswith("connections-")
        },
    }
    if "baseline-http-c50" in by:
        summary["against_baseline"] = {
            f"{up} {key}": round(med(f"{up}-c{c}", key) / med(f"baseline-{up}-c{c}", key), 3)
            for up in ("http", "tls", "json")
            for c, key in ((50, "server_cpu_us_per_call"), (50, "rps"), (1, "p50_us"))
        } | {
            "baseline peak RSS MiB (http)": max(r["server_peak_rss_mib"] for r in by["baseline-http-c50"]),
        }
        if "ghz-baseline-http" in by:
            summary["against_baseline"]["http ghz rps"] = round(
                med("ghz-http", "rps") / med("ghz-baseline-http", "rps"), 3)
    with open(path, "a") as out:
        out.write(json.dumps(summary) + "\n")
    print(f"{'server':10} {'cpu/call c=50':>14} {'x bare':>7} {'x fwd':>6} {'calls/s':>8} {'p50 c=1':>8} {'RSS MiB':>8}")
    for r in table:
        print(f"{r['server']:10} {r['cpu_us_per_call_c50']:>11} us {r['x_bare']:>7} {r.get('x_forwarder', '-'):>6} "
              f"{r['rps_c50']:>8} {r['p50_us_c1']:>5} us {r['peak_rss_mib']:>8}")
    for c in checks:
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {c['target']}: {c['measured']} (limit {c['limit']})")
    for name, ratio in summary.get("against_baseline", {}).items():
        print(f"this build / baseline, {name}: {ratio}")
    print(f"upstream connections mid-run: {summary['upstream_connections']}")
    print(f"per-call log line at c=50: {summary['log_cost_us_per_call_c50']} us of CPU")
    print("all targets met" if summary["all_pass"] else "some targets missed")


if __name__ == "__main__":
    main()
