"""Wire benchmarks, one run, ratios against baselines measured beside them.

    python bench/bench_wire.py [--scale 1.0]

1. Framing: frames/s and MB/s for encode+decode with each twin (Cython vs pure Python).
2. Compression: per-frame zlib (what jalien does) vs one zlib stream per connection.
3. A 100k-entry directory listing: msgspec (MessagePack and JSON) vs stdlib json.
Targets (issue 2): Cython framing >= 5x the pure twin on small frames; decoding the
100k listing <= 80 ms.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib

from jalien._fast import framing_py
from jalien.wire import codec
from jalien.wire.messages import DirEntry, Reply

try:
    from jalien._fast import framing_c
except ImportError:
    framing_c = None


def best_of(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_framing(impl, body: bytes, count: int) -> tuple[float, float]:
    """Encode *count* frames (each handed on, as to a transport) and decode them back from
    64 KiB reads; frames/s and MB/s of encode + decode together."""
    encode = impl.encode_frame
    wire = b"".join([encode(i, body) for i in range(count)])
    chunks = [wire[i : i + 65536] for i in range(0, len(wire), 65536)]

    def run_encode():
        for i in range(count):
            encode(i, body)

    def run_decode():
        feed = impl.FrameDecoder().feed
        n = 0
        for chunk in chunks:
            n += len(feed(chunk))
        assert n == count

    t = best_of(run_encode) + best_of(run_decode)
    return count / t, count * len(body) / t / 1e6


def listing(n: int) -> Reply:
    results = [
        {
            "message": f"AO2D_{i:06d}.root",
            "name": f"AO2D_{i:06d}.root",
            "lfn": f"/alice/data/2024/LHC24a/000123456/apass1/AO2D_{i:06d}.root",
            "permissions": "-rwxr-xr-x",
            "owner": "alidaq",
            "group": "alidaq",
            "size": str(1_000_000 + i),
            "ctime": "2024-05-01 12:00:00",
            "md5": f"{i:032x}",
            "guid": f"{i:08x}-1234-11ef-8000-0242ac120002",
        }
        for i in range(n)
    ]
    return Reply(results=results, metadata={"user": "alidaq", "currentdir": "/alice/"})


def typed_listing(n: int) -> Reply:
    entries = [
        DirEntry(
            name=f"AO2D_{i:06d}.root",
            perm="755",
            owner="alidaq",
            gowner="alidaq",
            size=1_000_000 + i,
            ctime=1714564800000 + i,
            md5=f"{i:032x}",
            guid=f"{i:08x}-1234-11ef-8000-0242ac120002",
        )
        for i in range(n)
    ]
    return Reply(entries=entries, metadata={"user": "alidaq", "currentdir": "/alice/"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="work size factor (CI: 0.01)")
    args = parser.parse_args()
    s = args.scale
    twins = [("python", framing_py)] + ([("cython", framing_c)] if framing_c else [])

    print("== framing: encode + decode (best of 5)")
    for label, size, count in [
        ("small 64 B", 64, 200_000),
        ("medium 4 KiB", 4096, 50_000),
        ("large 1 MiB", 1 << 20, 200),
    ]:
        body = bytes(range(256)) * (size // 256) if size >= 256 else b"x" * size
        count = max(10, int(count * s))
        rates = {}
        for name, impl in twins:
            fps, mbs = bench_framing(impl, body, count)
            rates[name] = fps
            print(f"  {label:13s} {name:7s} {fps:12,.0f} frames/s {mbs:10,.1f} MB/s")
        if len(rates) == 2:
            print(
                f"  {label:13s} ratio   cython/python = {rates['cython'] / rates['python']:.1f}x"
                + ("   (target >= 5x)" if size == 64 else "")
            )

    print("== compression of a listing reply: per-frame zlib vs one stream per connection")
    replies = [codec.encode_msgpack(listing(50)) for _ in range(max(2, int(200 * s)))]
    raw = sum(map(len, replies))
    impl = framing_c or framing_py
    t_frame = best_of(lambda: [impl.compress(r, 1) for r in replies], 3)
    per_frame = sum(len(impl.compress(r, 1)) for r in replies)

    def stream():
        c = zlib.compressobj(1)
        return sum(len(c.compress(r) + c.flush(zlib.Z_SYNC_FLUSH)) for r in replies)

    t_stream = best_of(stream, 3)
    per_conn = stream()
    print(f"  per-frame:      {per_frame / raw:6.3f} of raw, {raw / t_frame / 1e6:8.1f} MB/s")
    print(f"  per-connection: {per_conn / raw:6.3f} of raw, {raw / t_stream / 1e6:8.1f} MB/s")
    print("  (per-frame keeps frames independent: a proxy forwards them without inflating)")

    n = max(1000, int(100_000 * s))
    print(f"== a {n:,}-entry directory listing")
    reply = listing(n)
    as_dict = {"metadata": reply.metadata, "results": reply.results}
    typed = typed_listing(n)
    tmp = codec.encode_msgpack(typed)
    mp = codec.encode_msgpack(reply)
    js = codec.encode_json(reply)
    std = json.dumps(as_dict).encode()
    rows = [
        (
            "msgspec typed",
            lambda: codec.encode_msgpack(typed),
            lambda: codec.decode_msgpack(tmp),
            len(tmp),
        ),
        (
            "msgspec msgpack",
            lambda: codec.encode_msgpack(reply),
            lambda: codec.decode_msgpack(mp),
            len(mp),
        ),
        ("msgspec json", lambda: codec.encode_json(reply), lambda: codec.decode_json(js), len(js)),
        ("stdlib json", lambda: json.dumps(as_dict).encode(), lambda: json.loads(std), len(std)),
    ]
    times = {}
    for name, enc, dec, size in rows:
        te, td = best_of(enc, 3), best_of(dec, 5)
        times[name] = td
        print(f"  {name:16s} encode {te * 1e3:7.1f} ms  decode {td * 1e3:7.1f} ms  {size:>11,} B")
    print(
        f"  decode ratio stdlib json / msgspec typed = "
        f"{times['stdlib json'] / times['msgspec typed']:.1f}x, / msgspec records = "
        f"{times['stdlib json'] / times['msgspec msgpack']:.1f}x"
    )
    print(
        f"  typed listing decode {times['msgspec typed'] * 1e3:.1f} ms "
        f"(target <= 80 ms at 100k; the binary channel carries listings as DirEntry)"
    )


if __name__ == "__main__":
    main()
