"""A fixed request rate with the requests spread evenly: `paced(url, headers, rate, seconds)`.

`hey -c N -q R` starts N workers whose tickers fire together, so "100 req/s" with five
workers is five simultaneous requests every 50 ms, and each waits for those ahead of it:
the p50 then measures a burst's queue, not a request. Here each hey process runs one
connection (`-c 1`), and `rate / 200` of them (at least one) start a `1 / rate` apart,
so arrivals interleave evenly. One connection per process means a request is sent on its
tick or, if the one before it is still unanswered, when that answer comes (at these rates
the answers take a few milliseconds against a 5 to 10 ms tick). The achieved rate is printed
beside the percentiles, so a server that cannot keep up shows it.
"""

from __future__ import annotations

import csv
import io
import statistics
import subprocess
import time

__all__ = ["paced"]

_PER_PROCESS = 200  # req/s one hey connection sends, at most


def paced(url: str, headers: dict[str, str], rate: int, seconds: int) -> dict[str, float]:
    """rps, p50 and p99 (ms) and the non-2xx count of `rate` POSTs a second for `seconds`."""
    count = max(1, -(-rate // _PER_PROCESS))
    flags = [f"-H={name}: {value}" for name, value in headers.items()]
    processes: list[subprocess.Popen[str]] = []
    latencies: list[float] = []
    errors = 0
    try:
        for index in range(count):
            if index:
                time.sleep(1 / rate)  # the next process's ticks fall between this one's
            command = ["hey", "-z", f"{seconds}s", "-c", "1", "-q", str(rate / count)]
            processes.append(
                subprocess.Popen(
                    [*command, "-o", "csv", "-m", "POST", *flags, url],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        for process in processes:
            out, _ = process.communicate()
            for row in csv.DictReader(io.StringIO(out)):
                latencies.append(float(row["response-time"]) * 1000)
                if not row["status-code"].startswith("2"):
                    errors += 1
    finally:  # interrupted: no load generator outlives the bench
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    if not latencies:
        raise RuntimeError(f"hey answered nothing for {url}")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"rps": len(latencies) / seconds, "p50": cuts[49], "p99": cuts[98], "errors": errors}
