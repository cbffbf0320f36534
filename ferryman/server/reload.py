"""Configuration reload without dropping anything: SIGHUP, ``ferryman reload``, or a watched file.

Theory of operation. A reload has two halves. `prepare(path)` does everything that can fail and
touches nothing running: it reads and validates the configuration and compiles the plan, which loads
every certificate, key, CA and htpasswd file (`ferryman.plan`). It raises `ConfigError` with every
problem (``file:line: key: what is wrong; what would be valid``), and a process that gets one keeps
serving what it serves. `apply(running, plan)` then swaps, in two steps:

1. Staging, which may still fail (`CannotBind`, `Refused`) and then undoes itself: new listeners are
   bound, and each kept listener (`match_listeners`) gets a new server on a duplicate of its listening
   socket. Nothing accepts on these yet. The socket itself is never closed, so a kept listener never
   refuses a connection, and its new server carries the new TLS certificates.
2. The swap, which cannot fail: runtime objects are built for the new plan, keeping every member still
   configured (same pool, same URL) with its live state: health and its clocks, counters, scores,
   idle connections (`runtime.build_runtime`). The new servers start, the old ones stop accepting;
   the listeners of the old plan are retired: idle client connections move to the new plan at once,
   busy ones after the request they are answering (an exchange keeps the route, pool and member it
   started with), and those of a removed listener close after it. Members no longer configured keep no
   idle connection; their busy ones close when their exchange ends. The prober restarts with the new
   checks (the health state it feeds is the members', kept).

`Reloader` runs in the serving process: it writes the pid file and the status file beside it
(`ferryman.pidfile`) that ``ferryman reload`` reads, reloads on SIGHUP, and polls the files the plan
read (certificates, keys, CAs, htpasswd files) every `POLL` seconds, reloading once a change has
settled for `SETTLE` seconds (`ferryman.core.changes`). A refused reload logs each reason once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ferryman import pidfile
from ferryman.core.changes import SettledChange
from ferryman.errors import ConfigError, ConfigIssue
from ferryman.server.accesslog import AccessLog
from ferryman.server.prober import Prober
from ferryman.server.accept import announce, protocol_factory
from ferryman.server.runtime import Limits, ListenerRuntime, Server, build_runtime

if TYPE_CHECKING:  # pragma: no cover
    from ferryman.config.schema import Config
    from ferryman.plan import ListenerPlan, Plan

log = logging.getLogger("ferryman")

#: Seconds between two looks at the watched files, and how long a change must stay still to count.
POLL = 0.5
SETTLE = 1.0


# -- prepare: everything that can fail --------------------------------------------------------------

@dataclass(frozen=True)
class Prepared:
    """A configuration read, checked and compiled: ready to swap in.

    `signatures` are the watched files' signatures taken before the plan read them, so a change made
    while it was read is seen by the next poll.
    """

    path: str
    plan: "Plan"
    signatures: dict[str, Any]
    text: str = ""  # the configuration's text, as read (a master hands it to the workers it starts)


def watched_files(config: "Config") -> list[Path]:
    """The files a plan loads that can change under a running ferryman: listener certificates and keys,
    backend CA and client certificates, htpasswd files."""
    out: list[Path] = []
    for lst in config.listener:
        for cert in lst.tls_certs:
            out += [cert.cert, cert.key]
    for pool in config.pool.values():
        tls = pool.tls
        if tls is not None:
            out += [p for p in (tls.ca, tls.cert, tls.key) if p is not None]
    for route in config.route:
        if route.auth is not None:
            out.append(route.auth.htpasswd)
    return list(dict.fromkeys(Path(p) for p in out))


def signature(path: str | Path) -> tuple[int, int, int, int] | None:
    """What changes when a file is rewritten or replaced: (device, inode, size, mtime); None if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def signatures(paths: Iterable[str | Path]) -> dict[str, Any]:
    return {str(p): signature(p) for p in paths}


def prepare(path: str) -> Prepared:
    """Read, validate and compile the configuration at `path`, loading every file it names.

    Raises:
        ConfigError: every problem found (a file that cannot be read is one too).
    """
    from ferryman.config.loader import load_config_text, read_config_text
    from ferryman.plan import compile_plan

    try:
        text = read_config_text(path)
    except OSError as err:
        raise ConfigError([ConfigIssue(path, None, "", f"cannot read the configuration: "
                                                       f"{err.strerror or err}")]) from None
    config = load_config_text(text, str(path), Path(path).parent)
    seen = signatures(watched_files(config))
    return Prepared(path, compile_plan(config), seen, text)


# -- apply: the swap --------------------------------------------------------------------------------

class Running(Protocol):
    """What `apply` changes in a started ferryman (`ferryman.server.app.Running`)."""

    server: Server
    listening: list[tuple[ListenerRuntime, list[asyncio.AbstractServer]]]
    prober: Prober

    async def reload(self, prepared: Prepared) -> list[str]: ...


class CannotBind(Exception):
    """A listener of the new plan cannot listen: `listener` (its plan), `error` (the OSError)."""

    def __init__(self, listener: "ListenerPlan", error: OSError) -> None:
        super().__init__(f"listener {listener.name}: {error}")
        self.listener = listener
        self.error = error


class Refused(Exception):
    """A configuration that cannot be swapped in; `reasons` are the lines to log and report."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons

class _Slot:
    """The listener runtime a staged server hands its connections to, set at the swap (it accepts
    nothing before)."""

    __slots__ = ("listener",)

    def __init__(self) -> None:
        self.listener: ListenerRuntime | None = None


def match_listeners(old: list[Any], new: list[Any]) -> list[int | None]:
    """For each listener plan of `new`, the index of the listener plan of `old` whose socket it keeps,
    or None (bind a new one). The same name, addresses and port keep it; so do, for a listener renamed,
    the same addresses and a fixed port (port 0 means any free port: only the name can match it)."""
    free = {i: (lp.name, lp.addresses, lp.port) for i, lp in enumerate(old)}
    out: list[int | None] = []
    for lp in new:
        found = next((i for i, key in free.items() if key == (lp.name, lp.addresses, lp.port)), None)
        if found is not None:
            del free[found]
        out.append(found)
    for j, lp in enumerate(new):
        if out[j] is None and lp.port != 0:
            found = next((i for i, key in free.items() if key[1:] == (lp.addresses, lp.port)), None)
            if found is not None:
                del free[found]
            out[j] = found
    return out


async def _stage(server: Server, lp: "ListenerPlan", slot: _Slot,
                 kept: list[asyncio.AbstractServer] | None) -> list[asyncio.AbstractServer]:
    """Servers for `lp`, not accepting yet: on duplicates of the kept sockets, or newly bound."""
    loop = server.loop

    factory = protocol_factory(server, lambda: slot.listener,  # type: ignore[arg-type,return-value]
                               lp.ssl_context is not None)  # slot.listener is set before it accepts

    backlog = min(4096, max(128, lp.config.max_connections))
    if kept is None:
        return [await loop.create_server(factory, lp.host, lp.port, reuse_address=True,
                                         backlog=backlog, start_serving=False)]
    out: list[asyncio.AbstractServer] = []
    try:
        for srv in kept:
            for sock in srv.sockets:
                dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
                try:
                    out.append(await loop.create_server(factory, sock=dup,
                                                        backlog=backlog, start_serving=False))
                except BaseException:
                    dup.close()
                    raise
    except BaseException:
        for srv in out:
            srv.close()
        raise
    return out


def _access_logs(server: Server, plan: "Plan") -> dict[tuple[str, str], AccessLog]:
    """The access logs of the new plan: the open ones kept, new ones opened (may raise OSError)."""
    logs: dict[tuple[str, str], AccessLog] = {}
    try:
        for lp in plan.listeners:
            cfg = lp.access_log
            key = (cfg.path, cfg.format)
            if cfg.format != "off" and key not in logs:
                logs[key] = server._logs.get(key) or AccessLog(cfg.path, cfg.format, server.loop, server.metrics)
    except OSError:
        for key, access in logs.items():
            if key not in server._logs:
                access.close()
        raise
    return logs


async def apply(running: Running, plan: "Plan") -> list[str]:
    """Swap `plan` in (see the module docstring); returns what changed, one line each.

    Raises:
        CannotBind: a new listener cannot listen (nothing was changed).
        Refused: an access log cannot be opened (nothing was changed).
    """
    server = running.server
    loop = server.loop
    old_plan = server.plan
    matches = match_listeners([lr.cfg for lr, _ in running.listening], list(plan.listeners))
    old = dict(enumerate(running.listening))
    # 1. staging
    staged: list[tuple["ListenerPlan", _Slot, list[asyncio.AbstractServer], ListenerRuntime | None]] = []
    try:
        for lp, match in zip(plan.listeners, matches):
            slot = _Slot()
            before = old.pop(match) if match is not None else None
            try:
                servers = await _stage(server, lp, slot, before[1] if before is not None else None)
            except OSError as exc:
                raise CannotBind(lp, exc) from exc
            staged.append((lp, slot, servers, before[0] if before is not None else None))
        try:
            logs = _access_logs(server, plan)
        except OSError as exc:
            raise Refused([f"cannot open an access log: {exc.strerror or exc} ({exc.filename})"]) from exc
    except BaseException:
        for _, _, servers, _ in staged:
            for srv in servers:
                srv.close()
        raise
    removed = list(old.values())

    # 2. the swap: nothing below may fail
    old_members = server.members
    old_logs = server._logs
    pools, listeners = build_runtime(plan, lambda cfg: logs.get((cfg.path, cfg.format)),
                                     previous=server.pools, now=loop.time())
    server.plan = plan
    server.config = plan.config
    server.limits = Limits(plan.config.limits)
    server.pools = pools
    server.listeners = listeners
    server.members = {(pool.name, m.name): m for pool in pools.values() for m in pool.members}
    server._logs = logs
    listening: list[tuple[ListenerRuntime, list[asyncio.AbstractServer]]] = []
    changes: list[str] = []
    for (_, slot, servers, prior), lr in zip(staged, listeners):
        slot.listener = lr
        listening.append((lr, servers))
        if prior is not None:
            lr.port = prior.port  # the port bound, when the configuration says 0
            prior.retired = True
            prior.successor = lr
        else:
            lr.port = servers[0].sockets[0].getsockname()[1]
    old_servers = [srv for _, srvs in running.listening for srv in srvs]
    running.listening = listening
    for lr, servers in listening:
        for srv in servers:
            try:
                await srv.start_serving()
            except OSError as exc:  # bound but cannot listen: another process took the port meanwhile
                log.error("listener %s cannot listen: %s", lr.name, exc.strerror or exc)
    for srv in old_servers:
        srv.close()
    for (_, _, servers, prior), lr in zip(staged, listeners):
        if prior is None:
            announce(lr, servers[0].sockets if servers else ())
            changes.append(f"listener {lr.name} added")
    for lr, _ in removed:
        lr.retired = True
        lr.successor = None
        log.info("listener %s closed: removed from the configuration; its %d open connection(s) close "
                 "after their request in flight", lr.name, lr.open_connections)
        changes.append(f"listener {lr.name} removed")
    # client connections: idle ones move (or close) now, busy ones after their request
    for client in list(server.clients):
        if client.listener.retired and not client.busy and not client.closed:
            if not client.follow():
                client.close_if_idle()
    # members: no idle connection kept for a removed member, nor across a backend TLS change
    for key, member in old_members.items():
        if key not in server.members:
            member.conns.limit = 0
            member.conns.close_all()
            changes.append(f"pool {key[0]} member {key[1]} removed")
        elif member.ssl is not None:
            member.conns.close_all()
    for key in server.members.keys() - old_members.keys():
        changes.append(f"pool {key[0]} member {key[1]} added")
    changes += _route_changes(old_plan, plan)
    for pool in pools.values():
        for member, transition in pool.transitions:
            server.log_transition(member, transition)
        pool.transitions.clear()
    for key, access in old_logs.items():
        if key not in logs:
            _close_when_idle(server, access)
    await running.prober.stop()
    running.prober = Prober(pools if server.shared is None else {}, loop, log, metrics=server.metrics)
    running.prober.start()
    for warning in plan.warnings:
        log.warning("%s", warning)
    return changes


def _route_changes(old: "Plan", new: "Plan") -> list[str]:
    def routes(plan: "Plan") -> dict[tuple[str, tuple[str, ...] | None], str]:
        return {(r.path, r.listeners): r.pool or "static" for r in plan.routes}

    def shown(key: tuple[str, tuple[str, ...] | None]) -> str:
        return key[0] + (f" (listeners {', '.join(key[1])})" if key[1] else "")

    before, after = routes(old), routes(new)
    out = [f"route {shown(k)} removed" for k in before if k not in after]
    out += [f"route {shown(k)} added" for k in after if k not in before]
    out += [f"route {shown(k)} now to pool {after[k]}" for k in after if k in before and before[k] != after[k]]
    return out


def _close_when_idle(server: Server, access: AccessLog) -> None:
    """Close an access log the new plan does not use once no connection of the old plan writes to it."""
    async def wait() -> None:
        while any(c.listener.access is access for c in server.clients):
            await asyncio.sleep(1.0)
        access.close()
    server.loop.create_task(wait())


# -- the reloader in the serving process ------------------------------------------------------------

class RunFiles:
    """The pid file and the reload status file of one running ferryman, which `ferryman reload` reads
    (`ferryman.reloadcmd`): a single process writes them through its `Reloader`, a master itself."""

    def __init__(self, pid_file: Path, config_path: str) -> None:
        self.pid_file = pid_file
        self.config_path = config_path
        self.pid = os.getpid()
        self.generation = 0           # reloads finished (applied, refused or failed)
        self.read_at = time.time()    # when the current (or last) reload began reading the file

    def write(self) -> None:
        """At start: the pid file (replacing one that names another running process) and the status."""
        other = pidfile.read_pid(self.pid_file)
        if other is not None and other != self.pid and pidfile.is_running(other):
            log.warning("pid file %s names process %d, which runs; replacing it (ferryman reload now "
                        "reaches this process)", self.pid_file, other)
        try:
            pidfile.write_pid(self.pid_file, self.pid)
            self.status("started", [])
        except OSError as exc:
            log.error("cannot write the pid file %s: %s; ferryman reload cannot find this process (SIGHUP "
                      "still reloads)", self.pid_file, exc.strerror or exc)

    def remove(self) -> None:
        pidfile.remove_if_mine(self.pid_file, self.pid)

    def move(self, new: Path) -> None:
        """``pid_file`` changed in a reload: write the new one, remove the old one."""
        if new == self.pid_file:
            return
        try:
            pidfile.write_pid(new, self.pid)
        except OSError as exc:
            log.error("cannot write the new pid file %s: %s; keeping %s", new, exc.strerror or exc, self.pid_file)
            return
        pidfile.remove_if_mine(self.pid_file, self.pid)
        log.info("pid file moved from %s to %s", self.pid_file, new)
        self.pid_file = new

    def status(self, outcome: str, reasons: list[str], changes: list[str] | None = None) -> None:
        """The outcome `ferryman reload` waits on: started, reloaded, refused or failed."""
        self.generation += 1 if outcome != "started" else 0
        try:
            pidfile.write_status(self.pid_file, {
                "pid": self.pid, "generation": self.generation, "outcome": outcome,
                "config": os.path.realpath(self.config_path), "reasons": reasons, "changes": changes or [],
                "read_at": self.read_at, "time": time.time()})
        except OSError as exc:
            log.warning("cannot write the reload status file beside %s: %s", self.pid_file, exc.strerror or exc)


class Reloader:
    """Pid and status files, SIGHUP, and the watch on certificate and htpasswd files of one running
    ferryman (see the module docstring)."""

    def __init__(self, running: Running, config_path: str, signatures: dict[str, Any] | None = None) -> None:
        self.running = running
        self.config_path = config_path
        self.loop = running.server.loop
        self.files = RunFiles(pidfile.pid_path(running.server.config.pid_file, config_path), config_path)
        self._task: asyncio.Task[None] | None = None
        self._again: str | None = None
        self._watch_task: asyncio.Task[None] | None = None
        plan = running.server.plan
        self._watch = SettledChange(signatures if signatures is not None
                                    else _signatures_of(plan), SETTLE)

    def start(self) -> None:
        """Write the pid and status files, handle SIGHUP, watch the files."""
        # the handler first: a SIGHUP that finds the pid file must never meet the default action (exit)
        self.loop.add_signal_handler(signal.SIGHUP, self.request, "SIGHUP")
        self.files.write()
        self._watch_task = self.loop.create_task(self._watch_files(), name="ferryman-reload-watch")

    async def stop(self) -> None:
        """Stop watching and reloading; remove the pid and status files."""
        self.loop.remove_signal_handler(signal.SIGHUP)
        for task in (self._watch_task, self._task):
            if task is not None:
                task.cancel()
        for task in (self._watch_task, self._task):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        self.files.remove()

    def request(self, why: str) -> None:
        """Reload soon; a request during a reload makes one more after it (never two at once)."""
        if self.running.server.stopping:
            return
        if self._task is not None and not self._task.done():
            self._again = why
            return
        self._task = self.loop.create_task(self._run(why), name="ferryman-reload")

    async def _run(self, why: str) -> None:
        next_why: str | None = why
        while next_why is not None:
            self._again = None
            await self.reload(next_why)
            next_why = self._again

    async def reload(self, why: str) -> bool:
        """One reload of the configuration file; True when the new one is in effect."""
        path = self.config_path
        log.info("%s: reloading %s", why, path)
        started = time.monotonic()
        self.files.read_at = time.time()
        try:
            prepared = await self.loop.run_in_executor(None, prepare, path)
        except ConfigError as err:
            return self._refused([str(issue) for issue in err.issues])
        except Exception as exc:  # ferryman's bug: say so, keep serving
            log.error("reload failed: internal error", exc_info=exc)
            return self._refused([f"internal error while reading the configuration: {exc!r}"])
        if self.running.server.stopping:
            return False
        try:
            changes = await self.running.reload(prepared)
        except Refused as exc:
            return self._refused(exc.reasons)
        except Exception as exc:
            log.error("reload failed: internal error", exc_info=exc)
            return self._refused([f"internal error while applying the configuration: {exc!r}"])
        self._watch = SettledChange(prepared.signatures, SETTLE)
        self.files.move(pidfile.pid_path(prepared.plan.config.pid_file, path))
        took = (time.monotonic() - started) * 1000
        log.info("reloaded %s in %.0f ms%s", path, took, (": " + "; ".join(changes)) if changes else "")
        self.running.server.metrics.reload(True)
        self.files.status("reloaded", [], changes)
        return True

    def _refused(self, reasons: list[str]) -> bool:
        self.running.server.metrics.reload(False)
        for reason in reasons:
            log.error("%s", reason)
        log.error("reload refused: %d problem(s) in %s; still serving the previous configuration",
                  len(reasons), self.config_path)
        self.files.status("refused", reasons)
        return False

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            try:
                changed = self._watch.changed(signatures(self._watch.paths), self.loop.time())
                if changed:
                    self.request(f"{', '.join(Path(p).name for p in changed)} changed")
            except Exception as exc:  # a bug here must not stop serving
                log.error("watching the certificate and htpasswd files failed", exc_info=exc)


def _signatures_of(plan: "Plan") -> dict[str, Any]:
    return signatures(watched_files(plan.config))
