"""One sidecar worker (`Worker`): wiring, readiness, the servers and a clean shutdown.

The process model (one worker, or a supervisor of several) is `supervisor.py`; what the
settings ask for, checked at start, is `configuration.py`.

Two ways to get policy:
- **static** (`KAIZEN_SIDECAR_BUNDLE` + `KAIZEN_SIDECAR_JWKS`): verify that one bundle
  file at start and serve it; no control plane (tests, air-gapped operators).
- **sync** (`KAIZEN_GATEWAY_TOKEN`): serve the last-known-good bundle from disk at once,
  then follow the control plane's long-poll (`BundleSync`), report status and ship
  decision logs. Until some bundle verifies, every check is denied and `/healthz` is 503.

Each worker process runs one uvloop event loop with the gRPC and the HTTP server on the
same ports (SO_REUSEPORT, the kernel spreads connections); HTTP (`/ext_authz`) is the
default transport for Envoy, gRPC stays for meshes that speak only it. Several workers
need Redis, so budgets and grant reuse are shared; without Redis there is exactly one worker.

Readiness with several workers: a connection may land on any worker in the SO_REUSEPORT
group, so a worker joins the group only once it can decide. Worker 0 of a fresh start (the
herald) listens at once, to answer `/healthz` 503 and deny every check while nobody holds a
bundle; it raises the supervisor's `fleet_ready` event once its own bundle verifies. Every
other worker, and any worker the supervisor restarts after that, binds its ports only when
it holds a verified bundle and `fleet_ready` is set. So after `/healthz` first says ready,
every listening worker holds a bundle (authz_sidecar/README.md, "Process model and modes").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

from authz_sidecar import metrics
from authz_sidecar.authorizer import Authorizer, BudgetReserver
from authz_sidecar.budget_leases import LeasedBudgets
from authz_sidecar.budgets import (
    RedisBudgetBatch,
    RedisBudgetLedger,
)
from authz_sidecar.configuration import (
    ConfigurationError,
    budget_backends,
    check_settings,
    load_static_bundle,
)
from authz_sidecar.decision_log import DecisionBuffer
from authz_sidecar.engine_holder import EngineHolder, Snapshot
from authz_sidecar.grants import (
    ControlPlaneReplayGuard,
)
from authz_sidecar.grpc_server import start_grpc_server
from authz_sidecar.http_server import SidecarHttp, start_http_server
from authz_sidecar.settings import SidecarSettings
from authz_sidecar.status_report import StatusReporter, budget_usage, status_body
from authz_sidecar.tenancy import Tenants, shared_status
from authz_sidecar.tenant_logs import TenantLogs
from authz_sidecar.tenant_logs import shipper as tenant_shipper
from authz_sidecar.tenant_status import TenantStatusReporter
from authz_sidecar.verdict import decision_header_key
from policy.bundles.bundle_store import BundleStore
from policy.bundles.bundle_sync import (
    Backoff,
    BundleSync,
    Reconnect,
)
from policy.bundles.gateway_binding import binding_of_credential
from policy.bundles.platform_sync import PlatformSync
from policy.runtime import tracing

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 2.0
# How often a worker that waits for its first verified bundle looks again, and how often it
# says (as a warning naming the sync's last error) that it still waits.
READY_POLL_SECONDS = 0.05
READY_WAIT_WARNING_SECONDS = 30.0


class Worker:
    """One worker process: servers, bundle source, decision log, background tasks."""

    def __init__(
        self,
        settings: SidecarSettings,
        index: int = 0,
        fleet_ready: ProcessEvent | None = None,
    ) -> None:
        """`fleet_ready`: with several workers, the supervisor's event "a listening worker
        holds a verified bundle" (None for a single worker, which listens at once)."""
        self.settings = settings
        self.index = index
        self.fleet_ready = fleet_ready
        self.started_at = datetime.now(UTC)
        ledger, self.reservations, self.replay_guard, self._redis = budget_backends(settings)
        self.ledger = ledger
        token = settings.credential

        def make_holder() -> EngineHolder:
            return EngineHolder(
                ledger,
                issuer=settings.issuer,
                audience=settings.audience,
                gateway_binding=binding_of_credential(token) if token else None,
                oauth_issuer=settings.sidecar_oauth_issuer or settings.control_plane_url,
            )

        self.holder = make_holder()
        self.holder.subscribe(_on_snapshot)
        # A shared platform gateway (ADR 0012): one engine per served organisation.
        self.tenants = Tenants(make_holder, ledger) if settings.platform_token else None
        self.store: BundleStore | None = None
        self.sync: BundleSync | None = None
        self.platform_sync: PlatformSync | None = None
        self.decision_log: DecisionBuffer | None = None
        self.tenant_logs: TenantLogs | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.leases: LeasedBudgets | None = None
        self._stop = asyncio.Event()
        self._reconnect = Reconnect()  # the first one through after an outage wakes the others
        check_settings(settings)
        if settings.sidecar_bundle is None and not token:
            raise ConfigurationError(
                "no policy source: set KAIZEN_GATEWAY_TOKEN (sync from the control plane) "
                "or KAIZEN_SIDECAR_BUNDLE and KAIZEN_SIDECAR_JWKS (static mode)"
            )
        if settings.sidecar_bundle is not None and settings.sidecar_jwks is None:
            raise ConfigurationError("static mode needs KAIZEN_SIDECAR_JWKS beside the bundle")
        if self.tenants is not None and token:
            self.tenant_logs = TenantLogs(
                settings.state_dir / "decision-log" / f"shared-worker-{index}",
                mask=settings.sidecar_mask,
                ship=tenant_shipper(
                    settings.control_plane_url, token, lambda: Backoff(reconnect=self._reconnect)
                ),
            )
        elif token:
            self.decision_log = DecisionBuffer(
                settings.state_dir / "decision-log" / f"worker-{index}",
                mask=settings.sidecar_mask,
            )
        self.authorizer = Authorizer(
            self.tenants or self.holder,
            replay_guard=self.replay_guard,
            reservations=self.reservations,
            workspace=settings.sidecar_workspace,
            environment=settings.sidecar_environment,
            gateway=settings.sidecar_gateway,
            trust_workspace_header=settings.sidecar_trust_workspace_header,
            decision_key=decision_header_key(token) if token else None,
            sink=self.tenant_logs or self.decision_log,
            budgets=self._budget_reserver(),
        )
        self.http = SidecarHttp(
            self.authorizer,
            max_body=settings.sidecar_max_body_bytes,
            backlog=self._backlog,
            sync_status=self._sync_status,
            gateway_token=token,
            trusted_proxies=settings.sidecar_trusted_proxies,
            request_timeout=settings.sidecar_http_request_timeout_seconds,
            idle_timeout=settings.sidecar_http_idle_timeout_seconds,
            authzen_base_url=settings.sidecar_authzen_base_url,
        )

    def _sync_status(self) -> dict[str, Any]:
        """What the bundle sync refused (a foreign scope or key, a replayed old revision)."""
        if self.tenants is not None:
            return shared_status(self.tenants, self.platform_sync)
        sync, store = self.sync, self.store
        return {
            "bound_scope": store.scope if store is not None else self.settings.sidecar_scope,
            "bundle_verification_failures": sync.refused if sync is not None else 0,
            "last_verification_error": sync.last_refusal if sync is not None else None,
            "sync_error": sync.last_error if sync is not None else None,
        }

    def _backlog(self) -> int | None:
        log = self.tenant_logs or self.decision_log
        return log.backlog if log is not None else None

    def load_policy(self) -> None:
        settings = self.settings
        if self.tenants is not None and settings.platform_token:
            tenants = self.tenants
            self.platform_sync = PlatformSync(
                settings.state_dir / "platform-bundles",
                settings.control_plane_url,
                settings.platform_token,
                on_store=lambda org, store: store.subscribe(tenants.on_bundle(org)),
                on_drop=tenants.drop,
                min_revision=settings.bundle_min_revision,
                not_before=settings.not_before_seconds,
                backoff=lambda: Backoff(reconnect=self._reconnect),
            )
            self.platform_sync.load_last_known_good()
            return
        if settings.sidecar_bundle is not None and settings.sidecar_jwks is not None:
            verified = load_static_bundle(
                settings.sidecar_bundle,
                settings.sidecar_jwks,
                settings.sidecar_scope,
                min_revision=settings.bundle_min_revision,
                not_before=settings.not_before_seconds,
            )
            self.holder.on_bundle(verified)
            return
        pinned = None
        if settings.sidecar_jwks is not None:
            try:
                pinned = json.loads(settings.sidecar_jwks.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"KAIZEN_SIDECAR_JWKS {settings.sidecar_jwks} is not a readable JWKS: {exc}"
                ) from None
        self.store = BundleStore(
            settings.state_dir / "bundles",
            scope=settings.sidecar_scope,
            pinned_jwks=pinned,
            min_revision=settings.bundle_min_revision,
            not_before=settings.not_before_seconds,
        )
        self.store.subscribe(self.holder.on_bundle)
        self.store.load_last_known_good()

    def _budget_reserver(self) -> BudgetReserver | None:
        """The shared counters in Redis, served from leases unless leases are off."""
        if self._redis is None:
            return None  # in process: the engine reserves through its ledger
        settings = self.settings
        shared = RedisBudgetBatch(
            self._redis,
            settings.redis_prefix,
            record_ttl_seconds=settings.sidecar_reservation_ttl_seconds,
        )
        self.leases = (
            LeasedBudgets(shared, lease_calls=settings.sidecar_budget_lease_calls)
            if settings.sidecar_budget_lease_calls > 0
            else None
        )
        return self.leases or shared

    def _start_background(self) -> None:
        if self.leases is not None:
            self._spawn(self.leases.run())
        settings, token = self.settings, self.settings.credential
        if token is None:
            return
        url = settings.control_plane_url
        reconnect = self._reconnect
        if self.platform_sync is not None and self.tenants is not None:
            self._spawn(self.platform_sync.run())
            shared_reporter = TenantStatusReporter(
                url,
                token,
                instance=self.authorizer.instance,
                tenants=self.tenants,
                platform=self.platform_sync,
                logs=self.tenant_logs,
                reconnect=reconnect,
            )
            self._spawn(shared_reporter.run())
        if self.tenant_logs is not None:
            self.tenant_logs.resume()
        if self.store is not None:
            self.sync = BundleSync(self.store, url, token, backoff=Backoff(reconnect=reconnect))
            self._spawn(self.sync.run())
            reporter = StatusReporter(url, token, self._status, reconnect=reconnect)
            self._spawn(reporter.run())
        if self.decision_log is not None:
            shipping = self.decision_log.ship_forever(
                url, token, backoff=Backoff(reconnect=reconnect)
            )
            self._spawn(shipping)
        self._spawn(self._observe())

    def _status(self) -> dict[str, Any]:
        assert self.store is not None
        snapshot = self.holder.current
        budgets = snapshot.bundle.compiled.kaizen.get("budgets", []) if snapshot else []
        return status_body(
            instance=self.authorizer.instance,
            started_at=self.started_at,
            store=self.store,
            sync=self.sync,
            logs=[self.decision_log] if self.decision_log is not None else [],
            decisions=dict(self.authorizer.counts),
            budgets=budget_usage(
                budgets,
                self.holder.ledger,
                datetime.now(UTC),
                snapshot.organization if snapshot else "",
            ),
        )

    async def _observe(self) -> None:
        """Copy the sync's and the log's counters into metrics and /status."""
        seen_failures = 0
        observer = metrics.Observer()
        while True:
            if self.sync is not None:
                metrics.SYNC_FAILURES.inc(self.sync.failures - seen_failures)
                seen_failures = self.sync.failures
                if self.sync.last_sync is not None:
                    self.holder.last_sync = self.sync.last_sync.timestamp()
            log_ = self.tenant_logs or self.decision_log
            if log_ is not None:
                metrics.LOG_BACKLOG.set(log_.backlog)
            observer.observe(
                sync=self.sync or self.platform_sync, log=log_, snapshot=self.holder.current
            )
            await asyncio.sleep(2.0)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task stopped: %r", task.exception())

    def stop(self) -> None:
        self._stop.set()

    @property
    def ready(self) -> bool:
        """This worker holds a verified bundle (a shared gateway: some organisation's)."""
        return self.tenants.ready if self.tenants is not None else self.holder.ready

    def _listens_at_once(self) -> bool:
        """A single worker, or the herald of a fleet nobody in which is ready yet: it
        answers `/healthz` 503 and denies every check until its bundle verifies, and no
        sibling listens beside it before then, so what a probe sees is what a check gets."""
        if self.fleet_ready is None:
            return True
        return self.index == 0 and not self.fleet_ready.is_set()

    def _may_listen(self) -> bool:
        assert self.fleet_ready is not None
        return self.ready and self.fleet_ready.is_set()

    def _waiting_for(self) -> str:
        if self.ready:
            return "it holds a bundle; worker 0, which answers /healthz 503 meanwhile, does not yet"
        status = self._sync_status()
        return str(
            status.get("sync_error")
            or status.get("last_verification_error")
            or self.holder.last_error
            or "no bundle from the control plane yet"
        )

    async def _until(self, condition: Callable[[], bool], waiting: str) -> bool:
        """Poll `condition` until it holds (True) or the worker is stopped (False); warn
        every READY_WAIT_WARNING_SECONDS that it still does not, naming why."""
        started = time.monotonic()
        warn_at = started + READY_WAIT_WARNING_SECONDS
        while not condition():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), READY_POLL_SECONDS)
            if self._stop.is_set():
                return False
            if time.monotonic() >= warn_at:
                warn_at += READY_WAIT_WARNING_SECONDS
                log.warning(
                    "sidecar worker %d %s after %.0f s: %s",
                    self.index,
                    waiting,
                    time.monotonic() - started,
                    self._waiting_for(),
                )
        return True

    async def _announce_ready(self) -> None:
        """The herald: raise `fleet_ready` once its bundle verifies, letting siblings in."""
        assert self.fleet_ready is not None
        if await self._until(lambda: self.ready, "still has no verified policy bundle"):
            self.fleet_ready.set()
            log.info(
                "sidecar worker %d holds a verified bundle: the other workers may listen",
                self.index,
            )

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        settings = self.settings
        self.load_policy()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop)
        grpc_server = None
        http_server = None
        try:
            self._start_background()
            at_once = self._listens_at_once()
            if not at_once:
                if not self._may_listen():
                    log.info(
                        "sidecar worker %d waits for a verified policy bundle before it "
                        "listens (several workers share the ports: none may take a "
                        "connection it would deny for want of a bundle)",
                        self.index,
                    )
                if not await self._until(self._may_listen, "is not listening yet"):
                    return
            grpc_server = await start_grpc_server(
                self.authorizer,
                settings.sidecar_host,
                settings.sidecar_grpc_port,
                settings.sidecar_max_body_bytes,
            )
            http_server = await start_http_server(
                self.http, settings.sidecar_host, settings.sidecar_http_port
            )
            log.info(
                "sidecar worker %d listening: gRPC %s:%d, HTTP %s:%d",
                self.index,
                settings.sidecar_host,
                settings.sidecar_grpc_port,
                settings.sidecar_host,
                settings.sidecar_http_port,
            )
            if at_once and self.fleet_ready is not None:
                self._spawn(self._announce_ready())
            if on_ready is not None:
                on_ready()
            await self._stop.wait()
        finally:
            if http_server is not None:
                http_server.close()
                await self.http.close_connections()
            if grpc_server is not None:
                await grpc_server.stop(SHUTDOWN_GRACE_SECONDS)
            await self.authorizer.drain()
            if self.leases is not None:  # what this worker did not use counts again
                await self.leases.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.decision_log is not None:
                await self.decision_log.close()
            if self.tenant_logs is not None:
                await self.tenant_logs.close()
            if self._redis is not None:
                await self._redis.aclose()
            if isinstance(self.replay_guard, ControlPlaneReplayGuard):
                await self.replay_guard.aclose()
            if isinstance(self.ledger, RedisBudgetLedger):
                self.ledger.client.close()
            tracing.shutdown()  # the spans still buffered leave now


def _on_snapshot(snapshot: Snapshot) -> None:
    metrics.BUNDLE_REVISION.set(snapshot.bundle.revision_number)
    metrics.BUNDLE_ISSUED.set(snapshot.bundle.issued_at)


__all__ = ["Worker"]
