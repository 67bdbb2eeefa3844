#!/usr/bin/env python3
"""Reference hit ratios of libCacheSim's policies, in the format of the shared
traces' reference.json.

For each (trace, capacity) row it runs LRU, CLOCK, ARC, LIRS, 2Q, SIEVE,
S3-FIFO, W-TinyLFU with a static 1% and 10% window, and Belady (the optimum),
each with its libCacheSim defaults, every object of size 1 (capacity = entries).
"best" is the best non-optimal policy of the row.

Traces are gzip-compressed text, one unsigned decimal key a line (the shared
traces' format, and what `trace-gen` writes). Each is converted once to
libCacheSim's oracleGeneral binary format (with every request's next access
time, which Belady needs) in a temporary folder.

Needs libcachesim 0.3.5 from PyPI (the version behind the shared
reference.json), for instance in a virtual environment under target/:

    python3 -m venv target/refenv
    target/refenv/bin/pip install libcachesim==0.3.5

Usage:

    # the rows of a manifest written by `trace-gen` (trace, capacity, family, set)
    reference.py --manifest DIR/manifest.json --out DIR/reference.json
    # single rows, for checking against the shared reference.json
    reference.py --trace FILE.trace.gz --capacity N [--capacity M ...]

Extra fields of a manifest row (family, set, ...) are copied into the output row.
"""

import argparse
import gzip
import json
import os
import struct
import sys
import tempfile
import time

import libcachesim as lcs

# (name in reference.json, constructor)
POLICIES = [
    ("LRU", lambda c: lcs.LRU(c)),
    ("CLOCK", lambda c: lcs.Clock(c)),
    ("ARC", lambda c: lcs.ARC(c)),
    ("LIRS", lambda c: lcs.LIRS(c)),
    ("2Q", lambda c: lcs.TwoQ(c)),
    ("SIEVE", lambda c: lcs.Sieve(c)),
    ("S3-FIFO", lambda c: lcs.S3FIFO(c)),
    ("W-TinyLFU(1%)", lambda c: lcs.WTinyLFU(c, window_size=0.01)),
    ("W-TinyLFU(10%)", lambda c: lcs.WTinyLFU(c, window_size=0.1)),
    ("Belady", lambda c: lcs.Belady(c)),
]
OPTIMAL = "Belady"

# oracleGeneral record: u32 clock time, u64 object id, u32 size, i64 next access (vtime).
RECORD = struct.Struct("<IQIq")


def load_keys(path):
    with gzip.open(path, "rt") as f:
        return [int(line) for line in f if line.strip()]


def write_oracle(keys, path):
    """Writes keys as an oracleGeneral trace; next access -1 means never again."""
    next_access = [-1] * len(keys)
    seen = {}
    for i in range(len(keys) - 1, -1, -1):
        k = keys[i]
        next_access[i] = seen.get(k, -1)
        seen[k] = i + 1  # libCacheSim counts virtual time from 1
    with open(path, "wb") as f:
        buf = bytearray()
        for i, k in enumerate(keys):
            buf += RECORD.pack(i + 1, k, 1, next_access[i])
            if len(buf) >= 1 << 22:
                f.write(buf)
                buf.clear()
        f.write(buf)


def hit_ratios(oracle_path, capacity):
    """Each policy's hit ratio in percent on one trace and capacity."""
    out = {}
    for name, make in POLICIES:
        reader = lcs.TraceReader(oracle_path, lcs.TraceType.ORACLE_GENERAL_TRACE)
        cache = make(capacity)
        miss_ratio, _byte_miss_ratio = cache.process_trace(reader)
        out[name] = round(100.0 * (1.0 - miss_ratio), 2)
    return out


def row(trace, capacity, ratios, extra):
    best = max(v for k, v in ratios.items() if k != OPTIMAL)
    r = {"trace": trace, "capacity": capacity}
    r.update(extra)
    r.update(
        {"best": best, "belady": ratios[OPTIMAL], "lru": ratios["LRU"], "policies": ratios}
    )
    return r


def trace_name(path):
    base = os.path.basename(path)
    for suffix in (".trace.gz", ".gz"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", help="manifest.json written by trace-gen")
    parser.add_argument("--trace", help="one .trace.gz file")
    parser.add_argument("--capacity", type=int, action="append", default=[])
    parser.add_argument("--out", help="output JSON (default: stdout)")
    args = parser.parse_args()

    if args.manifest:
        with open(args.manifest) as f:
            manifest = json.load(f)
        folder = os.path.dirname(os.path.abspath(args.manifest))
        jobs = []
        for entry in manifest:
            extra = {k: v for k, v in entry.items() if k not in ("trace", "capacity")}
            path = os.path.join(folder, entry["trace"] + ".trace.gz")
            jobs.append((entry["trace"], path, entry["capacity"], extra))
    elif args.trace and args.capacity:
        jobs = [(trace_name(args.trace), args.trace, c, {}) for c in args.capacity]
    else:
        parser.error("give --manifest, or --trace with --capacity")

    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        converted = {}
        for trace, path, capacity, extra in jobs:
            if trace not in converted:
                oracle = os.path.join(tmp, trace + ".oracleGeneral")
                write_oracle(load_keys(path), oracle)
                converted = {trace: oracle}  # one trace on disk at a time
            ratios = hit_ratios(converted[trace], capacity)
            rows.append(row(trace, capacity, ratios, extra))
            print(
                f"[{time.time() - started:6.1f} s] {trace} {capacity}: best {rows[-1]['best']}"
                f" belady {ratios[OPTIMAL]}",
                file=sys.stderr,
            )
    text = json.dumps(rows, indent=1) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
