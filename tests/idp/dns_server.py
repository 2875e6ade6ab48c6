"""A local authoritative DNS server (dnslib) for the domain-verification tests.

It speaks the real protocol over UDP and TCP on one high port of 127.0.0.1 and answers
TXT queries from `records` (name → strings); every other name is NXDOMAIN. The control
plane reaches it through `KAIZEN_DNS_NAMESERVER=127.0.0.1:<port>`.
"""

from __future__ import annotations

import threading
from typing import Any

from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, records: dict[str, list[str]], lock: threading.Lock) -> None:
        self.records = records
        self.lock = lock
        self.queries: list[str] = []

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self.lock:
            self.queries.append(name)
            values = list(self.records.get(name, []))
        if not values:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in values:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(value), ttl=1))
        return reply


class _QuietLogger:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class LocalDns:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[str]] = {}
        self._resolver = _Resolver(self._records, self._lock)
        self._servers: list[DNSServer] = []
        self.port = 0

    def start(self) -> LocalDns:
        # One port for both transports: the kernel picks a free UDP port, whose TCP twin
        # may be taken by someone else; then try another.
        for _ in range(50):
            udp = DNSServer(self._resolver, address="127.0.0.1", port=0, logger=_QuietLogger())
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    self._resolver, address="127.0.0.1", port=port, tcp=True, logger=_QuietLogger()
                )
            except OSError:
                udp.server.server_close()
                continue
            break
        else:
            raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")
        self.port = port
        self._servers = [udp, tcp]
        for server in self._servers:
            server.start_thread()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def queries(self) -> list[str]:
        with self._lock:
            return list(self._resolver.queries)

    def set_txt(self, name: str, *values: str) -> None:
        with self._lock:
            self._records[name.lower()] = list(values)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._resolver.queries.clear()
