"""Who the CPU of a gateway call goes to, from `perf script -F comm,ip,sym` with call chains.

Each sample is charged to its owner: the innermost frame of its stack that belongs to a known part
(the log line, the tracing registry, signing, the ECS client, hyper's client, the gRPC server, …).
Kernel, allocator and memcpy frames are skipped when looking for the owner, so a write(2) or a
malloc is charged to the code that asked for it; their own shares are printed beside.
Usage: python3 bench/stack_shares.py STACKS
"""

import collections
import re
import sys

# The first part whose prefix starts a frame's path owns the sample; order matters.
PARTS = [
    ("log line: format and write", ("tracing_subscriber::fmt", "json_subscriber", "ecs_gateway::observe::log")),
    ("tracing: spans, records, filter", ("tracing_subscriber", "tracing_core", "tracing::", "sharded_slab")),
    ("OTLP layer", ("tracing_opentelemetry", "opentelemetry")),
    ("signing (V3, HMAC)", ("ecs_gateway::aliyun::signer", "ring::", "sha2", "hmac")),
    ("metrics", ("ecs_gateway::observe::metrics", "prometheus")),
    ("ECS client: request, retry, parse", ("ecs_gateway::aliyun",)),
    ("handler: validate, authorize, status", ("ecs_gateway::api", "ecs_gateway::auth", "ecs_gateway::limit")),
    ("connection handling (gateway)", ("ecs_gateway::server",)),
    ("other gateway code", ("ecs_gateway",)),
    ("hyper HTTP/1.1 client", ("hyper::proto::h1", "hyper_util::client", "hyper::client", "hyper_rustls")),
    ("gRPC server: h2, hyper, tonic, tower", ("h2::", "hyper::", "hyper_util", "tonic", "axum", "tower", "http_body", "prost")),
    ("tokio runtime", ("tokio::", "mio::")),
]
SKIPPED = {
    "kernel": lambda addr, path: addr >= 0xFFFF800000000000,
    "allocator": lambda addr, path: path.startswith(("mi_", "_mi_", "mimalloc", "alloc::", "__rust_")),
    "memcpy/memmove": lambda addr, path: path.startswith(("__mem", "memcpy", "memmove")),
}


def path_of(symbol):
    """The item path a symbol names: `A` for `<A as B>::f`, else what precedes generics."""
    if symbol.startswith("<"):
        symbol = symbol[1:]
    return re.split(r" as |<|\(|\{", symbol, maxsplit=1)[0]


def samples(path):
    frames = []
    for line in open(path, errors="replace"):
        if line.startswith((" ", "\t")) and line.strip():
            addr, _, symbol = line.strip().partition(" ")
            try:
                frames.append((int(addr, 16), path_of(symbol.strip())))
            except ValueError:
                continue
        elif frames:
            yield frames
            frames = []
    if frames:
        yield frames


def main():
    owners = collections.Counter()
    skipped = collections.Counter()
    total = 0
    for frames in samples(sys.argv[1]):
        total += 1
        addr, path = frames[0]
        for name, test in SKIPPED.items():
            if test(addr, path):
                skipped[name] += 1
                break
        owner = "unattributed (libc, threads)"
        for addr, path in frames:
            if any(test(addr, path) for test in SKIPPED.values()) or not path:
                continue
            found = next((n for n, prefixes in PARTS if path.startswith(prefixes)), None)
            if found:
                owner = found
                break
        owners[owner] += 1
    print(f"{total} samples. Charged to the innermost part of the stack:")
    for name, count in owners.most_common():
        print(f"  {100 * count / max(total, 1):5.1f} %  {name}")
    print("Spent in (any owner):")
    for name in SKIPPED:
        print(f"  {100 * skipped[name] / max(total, 1):5.1f} %  {name}")


if __name__ == "__main__":
    main()
