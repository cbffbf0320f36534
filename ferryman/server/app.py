"""Start, serve, stop: the lifecycle of one ferryman process.

Start: raise the open-file limit, bind every listener, say where we listen. Reload (SIGHUP, `ferryman
reload`, a changed certificate or htpasswd file): `ferryman.server.reload`. Stop (SIGTERM/SIGINT):
close the listening sockets at once, let in-flight requests finish within `shutdown_timeout`,
then exit 0.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import resource
import signal
import sys
import time
from typing import TYPE_CHECKING

from ferryman.server import reload
from ferryman.server.prober import Prober
from ferryman.server.proxy import ClientConnection
from ferryman.server.runtime import ListenerRuntime, Server

if TYPE_CHECKING:  # pragma: no cover
    from ferryman.plan import ListenerPlan, Plan
    from ferryman.server.reload import Prepared

log = logging.getLogger("ferryman")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": round(record.created, 3), "level": record.levelname.lower(),
                           "message": record.getMessage()}, separators=(",", ":"))


def setup_logging(cfg) -> None:  # type: ignore[no-untyped-def]
    """The error log: human-readable text or JSON lines, to stderr or a file."""
    handler: logging.Handler = (logging.StreamHandler(sys.stderr) if cfg.path == "-"
                                else logging.FileHandler(cfg.path))
    if cfg.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] ferryman: %(message)s"))
    root = logging.getLogger("ferryman")
    root.handlers[:] = [handler]
    root.setLevel(cfg.level.upper())
    root.propagate = False


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


def bind_error(plan: "Plan", listener: "ListenerPlan", exc: OSError) -> str:
    """One line saying which listener cannot listen where, why, and what to do."""
    where = plan.where(("listener", listener.index, "bind"))
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


class Running:
    """A started ferryman: its server state, listening sockets (per listener) and health prober."""

    def __init__(self, server: Server, listening: list[tuple[ListenerRuntime, list[asyncio.AbstractServer]]],
                 prober: Prober) -> None:
        self.server = server
        self.listening = listening
        self.prober = prober

    async def reload(self, prepared: "Prepared") -> list[str]:
        """Swap in a prepared configuration (`ferryman.server.reload`); returns what changed.

        Raises:
            reload.Refused: a new listener cannot listen (or an access log cannot be opened); nothing
                was changed.
        """
        plan, before = prepared.plan, self.server.config
        try:
            changes = await reload.apply(self, plan)
        except reload.CannotBind as exc:
            raise reload.Refused([bind_error(plan, exc.listener, exc.error)]) from exc
        raise_nofile_limit(sum(lst.max_connections for lst in plan.config.listener) + 64)
        if plan.config.log != before.log:
            setup_logging(plan.config.log)
        return changes

    async def stop(self, timeout: float) -> None:
        """Stop accepting, let in-flight requests finish within `timeout`, close everything."""
        server = self.server
        log.info("stopping: no new connections; waiting up to %gs for %d in-flight request(s)",
                 timeout, server.busy_connections())
        server.stopping = True
        for _, servers in self.listening:
            for srv in servers:
                srv.close()
        server.close_idle_clients()
        deadline = time.monotonic() + timeout
        while server.busy_connections():
            if time.monotonic() >= deadline:
                log.warning("shutdown deadline passed; closing %d connection(s)", len(server.clients))
                break
            await asyncio.sleep(0.05)
        server.close_all()
        await self.prober.stop()
        server.flush_logs()


async def start(plan: "Plan") -> Running:
    """Bind every listener and start serving on the running loop; raises `CannotListen`."""
    config = plan.config
    loop = asyncio.get_running_loop()
    for warning in plan.warnings:
        log.warning("%s", warning)
    server = Server(plan, loop)
    raise_nofile_limit(sum(lst.max_connections for lst in config.listener) + 64)
    servers: list[asyncio.AbstractServer] = []
    for listener in server.listeners:
        try:
            servers.append(await _bind(server, listener))
        except OSError as exc:
            for srv in servers:
                srv.close()
            server.flush_logs()
            raise CannotListen(bind_error(plan, listener.cfg, exc)) from exc
    for listener, srv in zip(server.listeners, servers):
        listener.port = srv.sockets[0].getsockname()[1]  # the real port when bound to port 0
        for sock in srv.sockets:
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            scheme = "https" if listener.tls else "http"
            log.info("listening on %s://%s:%d (listener %s)", scheme, shown, port, listener.name)
    prober = Prober(server.pools, loop, log)
    prober.start()
    return Running(server, [(lst, [srv]) for lst, srv in zip(server.listeners, servers)], prober)


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
    reloader = reload.Reloader(running, plan.source)  # SIGHUP, ferryman reload, changed certificates
    reloader.start()
    if early:
        reloader.request("SIGHUP")
    await stop.wait()
    await reloader.stop()
    await running.stop(running.server.config.shutdown_timeout)
    log.info("stopped")
    return 0


async def _bind(server: Server, listener: ListenerRuntime) -> asyncio.AbstractServer:
    limit = listener.cfg.max_connections

    def factory() -> ClientConnection:
        return ClientConnection(server, listener)

    srv = await server.loop.create_server(
        factory, listener.host, listener.port, ssl=listener.ssl_context,
        reuse_address=True, backlog=min(4096, max(128, limit)))
    return srv


def run(plan: "Plan") -> int:
    """Serve `plan` on uvloop (asyncio's default loop when uvloop is missing)."""
    setup_logging(plan.config.log)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(serve(plan))
    return uvloop.run(serve(plan))
