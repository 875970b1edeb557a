"""A load balancer's health check against `serve` (see scripts/abuse-tests): GET /healthz every
--interval seconds on one keep-alive connection, for --seconds. Paced, not flat out, so that the
probe itself does not load the server it measures. Prints "p99_ms probes failures"; a failed
probe (error, timeout or non-200) reconnects and counts as a failure."""
import argparse
import http.client
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--seconds", type=float, default=6)
parser.add_argument("--interval", type=float, default=0.02)
args = parser.parse_args()

latencies, failures = [], 0
conn = None
end = time.monotonic() + args.seconds
next_at = time.monotonic()
while time.monotonic() < end:
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=5)
    started = time.monotonic()
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise OSError(f"status {response.status}")
        latencies.append((time.monotonic() - started) * 1000)
    except (OSError, http.client.HTTPException):
        failures += 1
        conn.close()
        conn = None
    next_at += args.interval
    time.sleep(max(0.0, next_at - time.monotonic()))

latencies.sort()
p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
print(f"{p99:.2f} {len(latencies)} {failures}")
