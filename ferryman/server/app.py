"""Start, serve, stop: the lifecycle of one ferryman process.

Start: raise the open-file limit, bind every listener (and the admin listener when ``[admin]`` is
set), say where we listen. Reload (SIGHUP, `ferryman reload`, a changed certificate or htpasswd file):
`ferryman.server.reload`. Stop (SIGTERM/SIGINT): close the listening sockets at once, let in-flight
requests finish within `shutdown_timeout`, then exit 0. SIGUSR1 reopens the error log and the access
logs by name (logrotate renames them first, then signals). Metrics are flushed every second.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from prometheus_client import disable_created_metrics

from ferryman.core.balancer import snapshot
from ferryman.server.admin import AdminServer
from ferryman.server.metrics import Metrics, metrics_registry_for_admin, render
from ferryman.server import reload
from ferryman.server.accept import announce, protocol_factory
from ferryman.server.prober import Prober
from ferryman.server.runtime import ListenerRuntime, Server

if TYPE_CHECKING:  # pragma: no cover
    from ferryman.plan import ListenerPlan, Plan
    from ferryman.server.member_table import SharedMembers
    from ferryman.server.reload import Prepared

log = logging.getLogger("ferryman")


class _JsonFormatter(logging.Formatter):
    def __init__(self, who: str = "") -> None:
        super().__init__()
        self.who = who

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": round(record.created, 3), "level": record.levelname.lower(), "message": record.getMessage()}
        if self.who:
            entry["process"] = self.who
        return json.dumps(entry, separators=(",", ":"))


def setup_logging(cfg, who: str = "") -> None:  # type: ignore[no-untyped-def]
    """The error log: human-readable text or JSON lines, to stderr or a file. `who` names a worker
    process (``worker 2``), shown as ``ferryman[worker 2]`` (JSON: ``"process": "worker 2"``); the
    master and a single process are ``ferryman``."""
    handler: logging.Handler = (logging.StreamHandler(sys.stderr) if cfg.path == "-"
                                else logging.FileHandler(cfg.path))
    if cfg.format == "json":
        handler.setFormatter(_JsonFormatter(who))
    else:
        name = f"ferryman[{who}]" if who else "ferryman"
        handler.setFormatter(logging.Formatter(f"%(asctime)s [%(levelname)s] {name}: %(message)s"))
    root = logging.getLogger("ferryman")
    root.handlers[:] = [handler]
    root.setLevel(cfg.level.upper())
    root.propagate = False


def reopen_error_log() -> None:
    """Open the error log file by its name again (after logrotate renamed it); stderr stays."""
    for handler in logging.getLogger("ferryman").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                old, handler.stream = handler.stream, handler._open()
                if old is not None:
                    old.close()
            finally:
                handler.release()


def raise_nofile_limit(wanted: int) -> None:
    """Open files are connections: raise the soft limit to the hard one and say if it is short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < wanted:
        log.warning("open-file limit is %d, below the %d client connections that max_connections "
                    "allows (each proxied one also holds a backend connection); raise it with "
                    "ulimit -n or lower max_connections", soft, wanted)


class CannotListen(Exception):
    """A listener cannot bind; the message says which, where, why and what to do."""


def bind_error(plan: "Plan", listener: "ListenerRuntime | ListenerPlan", exc: OSError) -> str:
    """One line saying which listener (its runtime or its plan) cannot listen where, why, and what to do."""
    index = listener.cfg.index if isinstance(listener, ListenerRuntime) else listener.index
    where = plan.where(("listener", index, "bind"))
    shown = f"[{listener.host}]" if ":" in listener.host else listener.host
    address = f"{shown}:{listener.port}"
    if exc.errno == errno.EADDRINUSE:
        why = (f"the address is already in use (another process, or another ferryman, listens there); stop "
               f"it, or give listener {listener.name} another port")
    elif exc.errno == errno.EACCES:
        why = ("permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port from 1024 "
               "up, or grant the capability")
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "no interface of this machine has that address; bind an address it has, such as 0.0.0.0"
    else:
        why = exc.strerror or str(exc)
    return f"{where}: listener {listener.name} cannot listen on {address}: {why}"


#: How long a stop waits for a connection accepted just before it to send its request.
SILENT_GRACE = 1.0

FLUSH_INTERVAL = 1.0  # seconds between moves of per-request sums into the metrics

_metrics: Metrics | None = None  # this process's metrics, kept across reloads


def process_metrics() -> Metrics:
    """This process's `Metrics`, made on first use and kept across configuration reloads."""
    global _metrics
    if _metrics is None:
        disable_created_metrics()  # no *_created series: half the exposition, and Prometheus ignores them
        _metrics = Metrics()
    return _metrics


def record_reload(ok: bool) -> None:
    """Count a configuration reload: ``ferryman_reloads_total{result="ok"}`` or ``{result="refused"}``."""
    process_metrics().reload(ok)


class Running:
    """A started ferryman: its server state, listening sockets, health prober and admin listener."""

    def __init__(self, server: Server, listening: list[tuple[ListenerRuntime, list[asyncio.AbstractServer]]],
                 prober: Prober, admin: AdminServer | None = None) -> None:
        self.server = server
        self.listening = listening
        self.prober = prober
        self.admin = admin
        self.started = server.metrics.started  # the process's start, kept across reloads
        self._flusher: asyncio.TimerHandle | None = None
        self._flush_soon()

    def _flush_soon(self) -> None:
        self._flusher = self.server.loop.call_later(FLUSH_INTERVAL, self._flush_tick)

    def _flush_tick(self) -> None:
        try:
            self.server.metrics.flush()
        except Exception as exc:  # a timer edge: ferryman's bug; the next tick tries again
            log.error("internal error while flushing metrics: %s: %s", type(exc).__name__, exc, exc_info=exc)
        self._flush_soon()

    def metrics_text(self) -> bytes:
        """/metrics: this process's sums flushed first, so a scrape sees every request answered so far."""
        self.server.metrics.flush()
        return render(metrics_registry_for_admin(self.server.metrics))

    def status(self) -> dict[str, Any]:
        """/status: pools with their members' live state, listeners, uptime, configuration, reloads."""
        server = self.server
        now = server.loop.time()
        return {
            "pid": os.getpid(),
            "config": server.plan.source,
            "started": self.started,
            "uptime_seconds": round(time.time() - self.started, 3),
            "reloads": dict(server.metrics.reload_counts),
            "in_flight": server.busy_connections(),
            "listeners": [{"name": lst.name, "bind": lst.cfg.bind, "port": lst.port, "tls": lst.tls,
                           "open_connections": lst.open_connections} for lst in server.listeners],
            "pools": [snapshot(pool, now) for pool in server.pools.values()],
        }

    def reopen_logs(self) -> None:
        """SIGUSR1: reopen the error log and every access log by name."""
        reopen_error_log()
        self.server.reopen_logs()
        log.info("SIGUSR1: log files reopened")

    async def reload(self, prepared: "Prepared") -> list[str]:
        """Swap in a prepared configuration (`ferryman.server.reload`); returns what changed.

        Raises:
            reload.Refused: a new listener cannot listen (or an access log cannot be opened); nothing
                was changed.
        """
        plan, before, before_admin = prepared.plan, self.server.config, self.server.plan.admin
        try:
            changes = await reload.apply(self, plan)
        except reload.CannotBind as exc:
            raise reload.Refused([bind_error(plan, exc.listener, exc.error)]) from exc
        raise_nofile_limit(sum(lst.max_connections for lst in plan.config.listener) + 64)
        if plan.config.log != before.log:
            setup_logging(plan.config.log)
        if plan.admin != before_admin:
            await self._restart_admin(plan)
            changes.append("admin listener " + (f"on {plan.config.admin.bind}" if plan.admin else "removed"))
        if plan.config.workers != before.workers:
            log.warning("workers changed from %s to %s: the number of processes changes when ferryman is "
                        "restarted; until then this process serves alone", before.workers or "default",
                        plan.config.workers or "default")
        return changes

    async def _restart_admin(self, plan: "Plan") -> None:
        """The `[admin]` table changed in a reload: close the admin listener, open the new one."""
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        if plan.admin is None:
            return
        admin = AdminServer(plan.admin, self.metrics_text, self.status)
        try:
            await admin.start()
        except OSError as exc:
            log.error("%s: the admin listener cannot listen on %s: %s; no admin listener until the next "
                      "reload", plan.where(("admin", "bind")), plan.config.admin.bind, exc.strerror or exc)
            return
        self.admin = admin

    async def stop(self, timeout: float) -> None:
        """Stop accepting, let in-flight requests finish within `timeout`, close everything."""
        server = self.server
        log.info("stopping: no new connections; waiting up to %gs for %d in-flight request(s)",
                 timeout, server.busy_connections())
        server.stopping = True
        for _, servers in self.listening:
            for srv in servers:
                srv.close()
        # a connection accepted just before the stop whose request has not arrived yet is owed an answer
        # (with several workers, the others go on accepting: its client did nothing wrong); it gets
        # SILENT_GRACE to start its request, every other idle connection is closed now
        server.close_idle_clients(keep_silent=True)
        start = time.monotonic()
        deadline = start + timeout
        grace = start + min(SILENT_GRACE, timeout)
        while server.busy_connections() or server.silent_connections():
            now = time.monotonic()
            if now >= grace and server.silent_connections():
                server.close_idle_clients()
                continue
            if now >= deadline:
                log.warning("shutdown deadline passed; closing %d connection(s)", len(server.clients))
                break
            await asyncio.sleep(0.05)
        server.close_all()
        await self.prober.stop()
        if self.admin is not None:
            self.admin.close()
        if self._flusher is not None:
            self._flusher.cancel()
        server.metrics.flush()
        server.metrics.unwatch(server)
        server.flush_logs()


async def start(plan: "Plan", sockets: "list[list[socket.socket]] | None" = None,
                shared: "Callable[[Server], SharedMembers] | None" = None) -> Running:
    """Bind every listener and start serving on the running loop; raises `CannotListen`.

    A worker of a master (`ferryman.server.master`) passes `sockets`, the listening sockets the master
    bound (one list per listener, in order), and `shared`, which binds its members to the shared member
    table; it then runs no health checks (the master does) and does not announce its listeners.
    """
    config = plan.config
    loop = asyncio.get_running_loop()
    if sockets is None:
        for warning in plan.warnings:
            log.warning("%s", warning)
    metrics = process_metrics()
    server = Server(plan, loop, metrics)
    raise_nofile_limit(sum(lst.max_connections for lst in config.listener) + 64)
    if shared is not None:
        server.shared = shared(server)
        server.shared.refresh()
    servers: list[asyncio.AbstractServer] = []
    for i, listener in enumerate(server.listeners):
        try:
            if sockets is None:
                servers.append(await _bind(server, listener))
            else:
                for sock in sockets[i]:
                    servers.append(await _bind(server, listener, sock))
        except OSError as exc:
            for srv in servers:
                srv.close()
            server.flush_logs()
            raise CannotListen(bind_error(plan, listener, exc)) from exc
    if sockets is None:
        for listener, srv in zip(server.listeners, servers):
            listener.port = srv.sockets[0].getsockname()[1]  # the real port when bound to port 0
            announce(listener, srv.sockets)
    else:
        for listener, socks in zip(server.listeners, sockets):
            listener.port = socks[0].getsockname()[1]
    admin = None
    if plan.admin is not None and sockets is None:  # a worker of several: the master serves it
        running: Running | None = None
        admin = AdminServer(plan.admin, lambda: running.metrics_text(),  # type: ignore[union-attr]
                            lambda: running.status())  # type: ignore[union-attr]
        try:
            await admin.start()
        except OSError as exc:
            for srv in servers:
                srv.close()
            server.flush_logs()
            raise CannotListen(f"{plan.where(('admin', 'bind'))}: the admin listener cannot listen on "
                               f"{plan.config.admin.bind}: {exc.strerror or exc}") from exc
    metrics.watch(server)
    prober = Prober(server.pools if shared is None else {}, loop, log, metrics=metrics)
    prober.start()
    if sockets is None:
        listening = [(lst, [srv]) for lst, srv in zip(server.listeners, servers)]
    else:  # a worker: one server per inherited socket, grouped by listener
        each = iter(servers)
        listening = [(lst, [next(each) for _ in socks]) for lst, socks in zip(server.listeners, sockets)]
    running = Running(server, listening, prober, admin)
    return running


async def serve(plan: "Plan") -> int:
    """Run until SIGTERM/SIGINT; return the exit status."""
    config = plan.config
    loop = asyncio.get_running_loop()
    early: list[str] = []  # a SIGHUP while starting (after "listening on") reloads once started
    loop.add_signal_handler(signal.SIGHUP, early.append, "SIGHUP")
    try:
        running = await start(plan)
    except CannotListen as exc:
        log.error("%s; nothing started", exc)
        if config.log.path != "-":
            print(f"ferryman: {exc}; nothing started", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, running.reopen_logs)
    reloader = reload.Reloader(running, plan.source)  # SIGHUP, ferryman reload, changed certificates
    reloader.start()
    if early:
        reloader.request("SIGHUP")
    await stop.wait()
    await reloader.stop()
    await running.stop(running.server.config.shutdown_timeout)
    log.info("stopped")
    return 0


async def _bind(server: Server, listener: ListenerRuntime,
                sock: "socket.socket | None" = None) -> asyncio.AbstractServer:
    limit = listener.cfg.max_connections

    chosen = protocol_factory(server, lambda: listener, listener.ssl_context is not None)
    if sock is not None:  # bound and listening already (by the master)
        return await server.loop.create_server(chosen, sock=sock)
    srv = await server.loop.create_server(
        chosen, listener.host, listener.port,
        reuse_address=True, backlog=min(4096, max(128, limit)))
    return srv


def run(plan: "Plan") -> int:
    """Serve `plan` in this process on uvloop (asyncio's default loop when uvloop is missing)."""
    setup_logging(plan.config.log)
    return run_loop(serve(plan))


def run_loop(main: "Coroutine[Any, Any, int]") -> int:
    """Run `main` on uvloop (asyncio's default loop when uvloop is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)
