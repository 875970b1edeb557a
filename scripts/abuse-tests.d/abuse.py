"""Misbehaving clients against a running `serve` (see scripts/abuse-tests), for --seconds:
idle connections, slow-loris headers and bodies, oversized and malformed requests, and a flood
of webhook notifications with bad signatures. Prints one JSON line with what each did."""
import argparse
import asyncio
import json
import os
import random

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--seconds", type=float, default=20)
parser.add_argument("--idle", type=int, default=5000)
parser.add_argument("--loris", type=int, default=200)
parser.add_argument("--kinds", default="",
                    help="comma-separated hostile kinds to send (all when empty)")
parser.add_argument("--rate", type=float, default=0,
                    help="hostile requests a second, all loops together (0: as fast as they go)")
parser.add_argument("--idle-wait", type=float, default=50,
                    help="how long each idle connection waits, from its own opening, for the server to close it")
args = parser.parse_args()
HOST = "127.0.0.1"
stats = {"idle_open": 0, "idle_failed": 0, "idle_closed_by_server": 0, "loris_open": 0, "loris_closed_by_server": 0,
         "statuses": {}}
LOOPS = 8  # concurrent loops of hostile requests
idle_ages = []  # seconds from each idle connection's opening to the server's close


def count(kind, status):
    key = f"{kind}:{status}"
    stats["statuses"][key] = stats["statuses"].get(key, 0) + 1


async def hold_idle():
    """Opens a connection, sends nothing, and waits up to --idle-wait from its own opening (not
    from the run's start: under load the last of 5,000 connections open seconds after the first)."""
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.open_connection(HOST, args.port)
    except OSError:
        stats["idle_failed"] += 1
        return
    opened = loop.time()
    stats["idle_open"] += 1
    try:
        data = await asyncio.wait_for(reader.read(1), timeout=args.idle_wait)
        if data == b"":
            stats["idle_closed_by_server"] += 1
            idle_ages.append(loop.time() - opened)
    except (asyncio.TimeoutError, OSError):
        pass
    writer.close()


async def loris(body):
    """Headers one byte a second (or whole headers, then a declared 200 KB body a byte a second),
    for up to --idle-wait from its own opening."""
    try:
        reader, writer = await asyncio.open_connection(HOST, args.port)
    except OSError:
        return
    deadline = asyncio.get_running_loop().time() + args.idle_wait
    stats["loris_open"] += 1
    if body:
        head = (f"POST /api/public/customer/upsert/info HTTP/1.1\r\nHost: {HOST}\r\nx-api-key: demo-key-acme-2026\r\n"
                "Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n").encode()
        writer.write(head)
        drip = b"[" * 200000
    else:
        drip = f"POST /api/public/customer/upsert/info HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: {'a' * 5000}".encode()
    loop = asyncio.get_running_loop()
    i = 0
    try:
        while loop.time() < deadline and i < len(drip):
            writer.write(drip[i:i + 1])
            await writer.drain()
            i += 1
            try:
                data = await asyncio.wait_for(reader.read(1024), timeout=1.0)
                if data == b"" or data:
                    stats["loris_closed_by_server"] += 1
                    break
            except asyncio.TimeoutError:
                pass
    except OSError:
        stats["loris_closed_by_server"] += 1
    writer.close()


async def request(raw):
    """One request on its own connection; the status code, or 'closed'."""
    try:
        reader, writer = await asyncio.open_connection(HOST, args.port)
        writer.write(raw)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
        parts = line.split()
        return parts[1].decode() if len(parts) > 1 else "closed"
    except (OSError, asyncio.TimeoutError):
        return "closed"


def post(path, body, headers=""):
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n{headers}\r\n").encode() + body


async def hostile(deadline):
    loop = asyncio.get_running_loop()
    nested = b"[" * 100000 + b"]" * 100000
    kinds = [
        ("oversized", lambda: post("/api/public/customer/upsert/info", b"{" + b" " * 300000 + b"}",
                                   "x-api-key: demo-key-acme-2026\r\nContent-Type: application/json\r\n")),
        ("malformed_json", lambda: post("/api/public/customer/upsert/info", b'{"channel": "whatsapp",',
                                        "x-api-key: demo-key-acme-2026\r\nContent-Type: application/json\r\n")),
        ("nested_json", lambda: post("/api/public/customer/upsert/info", nested,
                                     "x-api-key: demo-key-acme-2026\r\nContent-Type: application/json\r\n")),
        ("bad_http", lambda: b"GET / HTTP/9.9\r\n\x00\x01\x02\r\n\r\n"),
        ("garbage", lambda: os.urandom(2048)),
        ("bad_signature", lambda: post("/webhooks/whatsapp", b'{"object":"whatsapp_business_account","entry":[]}',
                                       "Content-Type: application/json\r\nX-Hub-Signature-256: sha256=" + "0" * 64 + "\r\n")),
        ("bad_signature", lambda: post("/webhooks/whatsapp", os.urandom(5000), "X-Hub-Signature-256: nope\r\n")),
    ]
    if args.kinds:
        kinds = [k for k in kinds if k[0] in args.kinds.split(",")]
    interval = LOOPS / args.rate if args.rate else 0
    next_at = loop.time() + random.uniform(0, interval)
    while loop.time() < deadline:
        if interval:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
        kind, make = random.choice(kinds)
        count(kind, await request(make()))


async def main():
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.seconds
    tasks = []
    for start in range(0, args.idle, 250):
        tasks += [asyncio.create_task(hold_idle()) for _ in range(min(250, args.idle - start))]
        await asyncio.sleep(0.05)
    tasks += [asyncio.create_task(loris(body=i % 2 == 1)) for i in range(args.loris)]
    tasks += [asyncio.create_task(hostile(deadline)) for _ in range(LOOPS)]
    await asyncio.gather(*tasks)
    if idle_ages:
        stats["idle_close_age_min"] = round(min(idle_ages), 1)
        stats["idle_close_age_max"] = round(max(idle_ages), 1)
    print(json.dumps(stats, sort_keys=True))

asyncio.run(main())
