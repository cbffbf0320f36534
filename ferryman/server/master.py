"""The master of several worker processes (``workers`` > 1): binds, supervises, checks, reloads.

Theory of operation
-------------------
The master binds every listener itself, before any worker exists, so a port in use or a permission
problem is reported once and nothing starts. It then starts ``workers`` processes that all accept on
those same listening sockets, and serves no request itself. Its own event loop runs the one health
prober (workers do not probe) and any extra services (`Master.start_services`).

How workers are made: ``subprocess`` (``python -m ferryman.server.worker``) with the listening sockets,
the shared member table and a readiness pipe passed as inherited descriptors (``pass_fds``), and the
configuration text on stdin. Not ``fork``: the master has a running event loop, a prober and possibly
an admin listener by the time it replaces a crashed worker or rolls a reload, and forking a process in
that state copies its loop, tasks and sockets into the child; a fresh interpreter starts clean and
runs exactly the code and configuration it is given. Not ``SO_REUSEPORT`` with each worker binding on
its own: then any process on the machine that binds the same port with that option (a stale ferryman
left running, an older worker) silently gets a share of the connections. Here only processes the
master started hold the sockets, and the kernel queues connections on the one listening socket until
some worker accepts them, so a worker that dies loses only the connections it had already accepted.

What workers share (`ferryman.server.member_table`, layout in `ferryman.core.member_slots`): each
member's health state (the master's health checks, any worker's passive ejection and recovery) and its
administrative status. What each worker keeps for itself: byrequests/bybusyness scores and in-flight
counts, retry budgets, keep-alive connections and caches (see docs/operations.md, "Workers").

Signals: SIGTERM/SIGINT stop every worker gracefully (each stops accepting and finishes what is in
flight within ``shutdown_timeout``), then the master exits 0. SIGHUP reloads: the new configuration is
validated first (a bad one is refused with every problem logged once, and the workers keep serving
the old one), new listeners are bound, then the workers are replaced one at a time: a new one is
started, and once it is ready an old one is stopped gracefully. Listeners the new configuration no
longer has are closed once no worker uses them. A worker that dies unexpectedly is replaced (logged
with its number, pid and exit status or signal); one that keeps dying soon after it starts is
replaced after a growing pause (0.5 s doubling to 30 s), so a crash loop does not spin the machine.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ferryman
from ferryman.core.member_slots import DEFAULT_CAPACITY, assign_slots
from ferryman.errors import ConfigError
from ferryman import pidfile
from ferryman.core.balancer import snapshot
from ferryman.core.changes import SettledChange
from ferryman.server.accept import announce
from ferryman.server.admin import AdminServer
from ferryman.server.app import (
    CannotListen, bind_error, process_metrics, reopen_error_log, run_loop, serve, setup_logging,
)
from ferryman.server.metrics import MULTIPROC_ENV, mark_process_dead, metrics_registry_for_admin, render
from ferryman.server.reload import POLL, SETTLE, RunFiles, prepare, signatures, watched_files
from ferryman.server.member_table import MemberTable, SharedMembers
from ferryman.server.prober import MemberCheck, Prober
from ferryman.server.runtime import build_runtime

if TYPE_CHECKING:  # pragma: no cover
    from ferryman.core.health import Transition
    from ferryman.plan import ListenerPlan, Plan

log = logging.getLogger("ferryman")

#: How long a new worker may take to compile its configuration and start serving.
READY_TIMEOUT = 60.0
#: A worker that dies sooner than this after it started counts towards a crash loop.
QUICK_CRASH = 10.0
#: Longest pause before replacing a worker that keeps crashing.
MAX_BACKOFF = 30.0

ListenerKey = tuple[Any, ...]
MemberName = tuple[str, str]


def listener_key(lp: "ListenerPlan") -> ListenerKey:
    """What identifies a listening socket across reloads: its addresses and port (and, for port 0,
    the listener's name: each such listener has its own ephemeral port, kept across reloads)."""
    return (lp.addresses, lp.port, lp.name if lp.port == 0 else "")


def bind_listener(lp: "ListenerPlan") -> list[socket.socket]:
    """Listening sockets for every address of `lp`, as asyncio's create_server makes them.

    Raises:
        OSError: an address cannot be bound (sockets already made are closed).
    """
    socks: list[socket.socket] = []
    port = lp.port
    backlog = min(4096, max(128, lp.config.max_connections))
    try:
        for family, address in lp.addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
            if port == 0:  # the other addresses take the port the first one got
                port = sock.getsockname()[1]
            sock.listen(backlog)
            sock.setblocking(False)
        if not socks:
            raise OSError(errno.EADDRNOTAVAIL, "no address to bind")
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def describe_exit(returncode: int) -> str:
    """``exited with status 3`` / ``was killed by signal SIGKILL``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"was killed by signal {name}"
    return f"exited with status {returncode}"


class SharedProber(Prober):
    """The master's prober: it adopts what workers changed before each check (a passing check may end
    a worker's passive rest early) and publishes every transition it causes for the workers."""

    def __init__(self, pools: Any, loop: asyncio.AbstractEventLoop, view: SharedMembers) -> None:
        super().__init__(pools, loop, log)
        self.view = view

    async def check_once(self, check: MemberCheck) -> "Transition | None":
        self.view.sync()
        transition = await super().check_once(check)
        if transition is not None:
            self.view.publish(check.member)
        return transition


@dataclass(eq=False)
class Worker:
    """One worker process: its position (1..workers, kept by its replacements) and its state."""

    position: int
    proc: asyncio.subprocess.Process
    started: float
    ready: bool = False
    retiring: bool = False
    watcher: "asyncio.Task[None] | None" = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid


class Master:
    """The master process (see the module docstring)."""

    def __init__(self, path: str, text: str, plan: "Plan", count: int, table: MemberTable) -> None:
        self.path = path
        self.text = text
        self.plan = plan
        self.count = count
        self.table = table
        self.sockets: dict[ListenerKey, list[socket.socket]] = {}
        self.slot_of: dict[MemberName, int] = {}
        self.retired_slots: set[int] = set()
        self.workers: dict[int, Worker] = {}    # position -> the current worker there
        self.retiring: set[Worker] = set()      # told to stop, not yet gone
        self.crashes: dict[int, int] = {}       # position -> quick crashes in a row
        self.started = False
        self.stopping = False
        self.prober: SharedProber | None = None
        self.view: SharedMembers | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._events: asyncio.Queue[str] = asyncio.Queue()
        self._reload: asyncio.Task[None] | None = None
        self._reload_again = False
        self._background: set[asyncio.Task[Any]] = set()
        self.pools: dict[str, Any] = {}         # the prober's pools: member states for /status
        self.metrics = process_metrics()        # in PROMETHEUS_MULTIPROC_DIR beside the workers' (run_master)
        self.admin: AdminServer | None = None
        self.files = RunFiles(pidfile.pid_path(plan.config.pid_file, path), path)
        self.started_at = time.time()
        self._watch_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def run(self) -> int:
        """Bind, start the workers, serve until SIGTERM/SIGINT; the exit status."""
        self.loop = loop = asyncio.get_running_loop()
        for warning in self.plan.warnings:
            log.warning("%s", warning)
        try:
            self._bind_new(self.plan)
        except CannotListen as exc:
            log.error("%s; nothing started", exc)
            if self.plan.config.log.path != "-":
                print(f"ferryman: {exc}; nothing started", file=sys.stderr)
            return 1
        self._assign_slots(self.plan, None)
        self._start_prober(self.plan)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_requested)
        loop.add_signal_handler(signal.SIGHUP, self._events.put_nowait, "reload")
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        workers = await asyncio.gather(*(self._spawn(pos, register=True) for pos in range(1, self.count + 1)))
        if not all(w.ready for w in workers):
            log.error("%d of %d worker(s) did not start; stopping", sum(not w.ready for w in workers), self.count)
            await self._stop_all()
            return 1
        self.started = True
        for lp in self.plan.listeners:
            announce(lp, self.sockets[listener_key(lp)])
        log.info("master pid %d: %d workers serving (pids %s)", os.getpid(), self.count,
                 " ".join(str(w.pid) for w in workers))
        await self.start_services()
        while True:
            event = await self._events.get()
            if event == "stop":
                break
            if self._reload is not None and not self._reload.done():
                self._reload_again = True  # one more reload once this one is done, with the newest file
                continue
            self._reload = loop.create_task(self._reload_loop())
        await self._stop_all()
        log.info("stopped")
        return 0

    def _stop_requested(self) -> None:
        # at once, not when the main loop gets to it: a worker that exits because the same Ctrl-C
        # reached it must not be taken for a crash and replaced
        self.stopping = True
        self._events.put_nowait("stop")

    async def start_services(self) -> None:
        """What belongs to the whole ferryman rather than to one worker: the pid and reload status files
        (`ferryman reload`), the watch on certificate and htpasswd files, and the admin listener, whose
        /metrics sums every process's values (prometheus-client's multi-process mode)."""
        self.files.write()
        self._watch_task = self.loop.create_task(self._watch_files(), name="ferryman-watch")
        await self._start_admin()

    async def _start_admin(self) -> None:
        admin = self.plan.admin
        if admin is None:
            return
        self.admin = AdminServer(admin, self._metrics_text, self.status)
        try:
            await self.admin.start()
        except OSError as exc:
            log.error("%s: the admin listener cannot listen on %s: %s", self.plan.where(("admin", "bind")),
                      admin.host, exc.strerror or exc)
            self.admin = None

    def _metrics_text(self) -> bytes:
        self.metrics.flush()
        return render(metrics_registry_for_admin())

    def status(self) -> dict[str, Any]:
        """/status of the whole ferryman: the member states every worker shares, and the workers."""
        if self.view is not None:
            self.view.refresh()
        now = self.loop.time()
        return {
            "pid": os.getpid(),
            "workers": [{"number": w.position, "pid": w.pid} for w in sorted(self.workers.values(),
                                                                            key=lambda w: w.position)],
            "config": self.plan.source,
            "started": self.started_at,
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "reloads": dict(self.metrics.reload_counts),
            "listeners": [{"name": lp.name, "bind": lp.config.bind,
                           "port": self.sockets[listener_key(lp)][0].getsockname()[1]}
                          for lp in self.plan.listeners if listener_key(lp) in self.sockets],
            "pools": [snapshot(pool, now) for pool in self.pools.values()],
        }

    async def stop_services(self) -> None:
        """Stop what `start_services` started (called first on SIGTERM/SIGINT)."""
        if self.admin is not None:
            self.admin.close()
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
        self.files.remove()

    def _reopen_logs(self) -> None:
        """SIGUSR1: reopen the error log here and have every worker reopen its logs."""
        reopen_error_log()
        for w in [*self.workers.values(), *self.retiring]:
            if w.proc.returncode is None:
                w.proc.send_signal(signal.SIGUSR1)
        log.info("SIGUSR1: log files reopened (and passed on to %d worker(s))", len(self.workers))

    def _refused(self, reasons: list[str]) -> None:
        for reason in reasons:
            log.error("%s", reason)
        log.error("reload refused: %d problem(s) in %s; still serving the previous configuration",
                  len(reasons), self.path)
        self.metrics.reload(False)
        self.files.status("refused", reasons)

    async def _watch_files(self) -> None:
        """Certificates, keys, CAs and htpasswd files changed on disk (and then still for a moment):
        reload, as SIGHUP does."""
        watch = SettledChange(signatures(watched_files(self.plan.config)), SETTLE)
        while True:
            await asyncio.sleep(POLL)
            try:
                if self.generation_watched != self.files.generation:  # a reload: watch the new plan's files
                    watch = SettledChange(signatures(watched_files(self.plan.config)), SETTLE)
                    self.generation_watched = self.files.generation
                changed = watch.changed(signatures(watch.paths), self.loop.time())
                if changed:
                    log.info("%s changed: reloading", ", ".join(Path(p).name for p in changed))
                    self._events.put_nowait("reload")
            except Exception as exc:  # a bug here must not stop serving
                log.error("watching the certificate and htpasswd files failed", exc_info=exc)

    generation_watched = 0

    async def _stop_all(self) -> None:
        self.stopping = True
        if self._reload is not None:
            self._reload.cancel()
        await self.stop_services()
        if self.prober is not None:
            await self.prober.stop()
        every = [*self.workers.values(), *self.retiring]
        for w in every:
            if w.proc.returncode is None:
                w.proc.send_signal(signal.SIGTERM)
        # the workers close their copies as they stop; once ours is closed too, new connections are refused
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()
        deadline = self.plan.config.shutdown_timeout + 10.0
        waits = [w.proc.wait() for w in every]
        if waits:
            done, pending = await asyncio.wait([asyncio.ensure_future(x) for x in waits], timeout=deadline)
            if pending:
                log.warning("%d worker(s) still running %gs after SIGTERM; killing them", len(pending), deadline)
                for w in every:
                    if w.proc.returncode is None:
                        w.proc.kill()
                await asyncio.gather(*(w.proc.wait() for w in every))
        for w in every:
            if w.watcher is not None:
                await asyncio.gather(w.watcher, return_exceptions=True)
        self.table.close()

    # -- workers -----------------------------------------------------------------------------------------

    async def _spawn(self, position: int, register: bool) -> Worker:
        """Start a worker with the current configuration and wait until it is ready (or gone).
        `register`: it is the worker at `position` from now on; else only once it is ready (a reload)."""
        plan = self.plan
        listeners = [[s.fileno() for s in self.sockets[listener_key(lp)]] for lp in plan.listeners]
        read_end, write_end = os.pipe()
        spec = {"number": position, "config": self.text, "filename": plan.source,
                "base_dir": str(Path(self.path).parent), "listeners": listeners, "table": self.table.fd,
                "slots": [[pool, member, slot] for (pool, member), slot in self.slot_of.items()],
                "ready": write_end}
        env = dict(os.environ)
        root = str(Path(ferryman.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ferryman.server.worker", stdin=asyncio.subprocess.PIPE,
                pass_fds=[fd for fds in listeners for fd in fds] + [self.table.fd, write_end], env=env)
        finally:
            os.close(write_end)
        worker = Worker(position, proc, self.loop.time())
        if register:
            self.workers[position] = worker
        worker.watcher = self.loop.create_task(self._watch(worker))
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(spec).encode())
            await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once: its watcher says so
        except RuntimeError:  # uvloop's word for a pipe already closed: it died at once, too
            if not proc.stdin.is_closing():
                raise
        worker.ready = await self._wait_ready(read_end)
        if not worker.ready and proc.returncode is None:
            log.error("worker %d (pid %d) not ready within %gs; stopping it", position, proc.pid, READY_TIMEOUT)
            proc.kill()
        return worker

    async def _wait_ready(self, fd: int) -> bool:
        """True once the worker wrote ``ready`` on its pipe; False when it closed it (it died) or timed out."""
        os.set_blocking(fd, False)
        done: asyncio.Future[bool] = self.loop.create_future()

        def readable() -> None:
            try:
                data = os.read(fd, 64)
            except BlockingIOError:
                return
            if not done.done():
                done.set_result(data.startswith(b"ready"))

        self.loop.add_reader(fd, readable)
        try:
            return await asyncio.wait_for(done, READY_TIMEOUT)
        except asyncio.TimeoutError:
            return False
        finally:
            self.loop.remove_reader(fd)
            os.close(fd)

    async def _watch(self, worker: Worker) -> None:
        """Wait for `worker` to exit; replace it when that was not asked for."""
        code = await worker.proc.wait()
        mark_process_dead(worker.pid)  # its live gauges leave /metrics; its counters still count
        if worker.retiring or self.stopping:
            self.retiring.discard(worker)
            level = logging.INFO if code == 0 else logging.WARNING
            log.log(level, "worker %d (pid %d) %s", worker.position, worker.pid, describe_exit(code))
            return
        current = self.workers.get(worker.position) is worker
        if not current or not self.started:
            if self.started or worker.ready:
                log.error("worker %d (pid %d) %s", worker.position, worker.pid, describe_exit(code))
            return
        lived = self.loop.time() - worker.started
        streak = self.crashes.get(worker.position, 0) + 1 if lived < QUICK_CRASH else 1
        self.crashes[worker.position] = streak
        delay = 0.0 if streak == 1 else min(MAX_BACKOFF, 0.5 * 2 ** (streak - 2))
        pause = (f" in {delay:g}s ({streak} crashes in a row, each within {QUICK_CRASH:g}s of starting)"
                 if delay else "")
        log.error("worker %d (pid %d) %s; replacing it%s", worker.position, worker.pid, describe_exit(code), pause)
        if delay:
            await asyncio.sleep(delay)
        if self.stopping or self.workers.get(worker.position) is not worker:
            return
        new = await self._spawn(worker.position, register=True)
        if new.ready:
            log.info("worker %d replaced: pid %d serving", new.position, new.pid)

    def _retire(self, worker: Worker) -> None:
        worker.retiring = True
        self.retiring.add(worker)
        if worker.proc.returncode is None:
            worker.proc.send_signal(signal.SIGTERM)

    # -- listeners, slots, prober ------------------------------------------------------------------------

    def _bind_new(self, plan: "Plan") -> list[ListenerKey]:
        """Bind the listeners of `plan` that are not bound yet; the keys bound.

        Raises:
            CannotListen: one cannot be bound (what this call bound is closed again).
        """
        added: list[ListenerKey] = []
        for lp in plan.listeners:
            key = listener_key(lp)
            if key in self.sockets:
                continue
            try:
                self.sockets[key] = bind_listener(lp)
            except OSError as exc:
                for k in added:
                    for sock in self.sockets.pop(k):
                        sock.close()
                raise CannotListen(bind_error(plan, lp, exc)) from exc
            added.append(key)
        return added

    def _assign_slots(self, plan: "Plan", previous: "Plan | None") -> None:
        """Give each member of `plan` its slot (kept for names that stay) and write its status.

        Raises:
            ValueError: the table has too few slots.
        """
        names = [(pool, m.name) for pool, p in plan.pools.items() for m in p.members]
        reserved = self.retired_slots if self.retiring else set()
        slot_of = assign_slots(self.slot_of, names, self.table.capacity, reserved)
        before = ({(pool, m.name): m.status for pool, p in previous.pools.items() for m in p.members}
                  if previous is not None else {})
        for pool, p in plan.pools.items():
            for m in p.members:
                name = (pool, m.name)
                if name not in self.slot_of:
                    self.table.reset(slot_of[name], m.status)
                elif before.get(name) != m.status:
                    self.table.write_status(slot_of[name], m.status)
        self.retired_slots = set(reserved) | {slot for n, slot in self.slot_of.items() if n not in slot_of}
        self.slot_of = slot_of

    def _start_prober(self, plan: "Plan") -> None:
        pools, _ = build_runtime(plan)
        members = {(p.name, m.name): m for p in pools.values() for m in p.members}
        self.pools = pools
        self.view = SharedMembers(self.table, self.slot_of, members)
        self.view.refresh()
        self.prober = SharedProber(pools, self.loop, self.view)
        self.prober.start()

    # -- reload ------------------------------------------------------------------------------------------

    async def _reload_loop(self) -> None:
        while True:
            self._reload_again = False
            try:
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in the reload must not take the serving workers down
                log.exception("reload failed unexpectedly; the workers keep the previous configuration")
                self.metrics.reload(False)
                self.files.status("failed", [f"internal error while reloading: {exc!r}; see the error log"])
            if not self._reload_again or self.stopping:
                return

    async def reload(self) -> None:
        """SIGHUP: validate, bind new listeners, replace the workers one at a time (module docstring)."""
        log.info("SIGHUP: reloading %s", self.path)
        self.files.read_at = time.time()
        try:
            prepared = await self.loop.run_in_executor(None, prepare, self.path)
        except ConfigError as err:
            return self._refused([str(issue) for issue in err.issues])
        text, plan = prepared.text, prepared.plan
        try:
            added = self._bind_new(plan)
        except CannotListen as exc:
            return self._refused([str(exc)])
        previous = self.plan
        try:
            self._assign_slots(plan, previous)
        except ValueError as exc:
            for key in added:
                for sock in self.sockets.pop(key):
                    sock.close()
            return self._refused([str(exc)])
        for warning in plan.warnings:
            log.warning("%s", warning)
        if plan.config.log != previous.config.log:
            setup_logging(plan.config.log)
        self.text, self.plan = text, plan
        self.count = count = worker_count(plan.config.workers)
        if self.prober is not None:
            await self.prober.stop()
        self._start_prober(plan)
        for lp in plan.listeners:
            if listener_key(lp) in added:
                announce(lp, self.sockets[listener_key(lp)])
        old_positions = sorted(self.workers)
        replaced = 0
        stopped = ""
        for position in range(1, max(count, len(old_positions)) + 1):
            if position <= count:
                new = await self._spawn(position, register=False)
                if not new.ready:
                    stopped = (f"reload stopped: the new worker {position} did not start (pid {new.pid}); "
                               f"{sum(1 for p in old_positions if p >= position)} worker(s) still run the "
                               "previous configuration")
                    log.error("%s", stopped)
                    break
                old = self.workers.get(position)  # looked up now: it may have been replaced meanwhile
                self.workers[position] = new
                replaced += 1
            else:
                old = self.workers.pop(position, None)
            if old is not None:
                self._retire(old)
        else:
            log.info("reloaded %s: %d worker(s) on the new configuration", self.path, replaced)
        self.metrics.reload(not stopped)
        if plan.admin != previous.admin:
            if self.admin is not None:
                self.admin.close()
                self.admin = None
            await self._start_admin()
        self.files.move(pidfile.pid_path(plan.config.pid_file, self.path))
        if stopped:
            self.files.status("failed", [stopped + "; see the error log"])
        else:
            self.files.status("reloaded", [], [f"{replaced} worker(s) on the new configuration"])
        task = self.loop.create_task(self._close_unused())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _close_unused(self) -> None:
        """Close the listening sockets no configuration uses, once the workers that had them are gone."""
        gone = [w.proc.wait() for w in list(self.retiring)]
        if gone:
            await asyncio.gather(*gone)
        wanted = {listener_key(lp) for lp in self.plan.listeners}
        for key in [k for k in self.sockets if k not in wanted]:
            for sock in self.sockets.pop(key):
                log.info("closed listening socket %s (no longer configured)", sock.getsockname()[:2])
                sock.close()


def worker_count(setting: int | None) -> int:
    """`workers` in effect: as configured, else one per CPU this process may run on."""
    if setting is not None:
        return setting
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run(plan: "Plan", config_path: str) -> int:
    """Serve `plan` (read from `config_path`): in this process with ``workers = 1``, else as the master
    of that many workers. The exit status."""
    setup_logging(plan.config.log)
    count = worker_count(plan.config.workers)
    if count > 1:
        status = run_master(plan, config_path, count)
        if status is not None:
            return status
    return run_loop(serve(plan))


def run_master(plan: "Plan", config_path: str, count: int) -> int | None:
    """Serve with `count` workers; the exit status, or None when the shared member table cannot be
    made (logged: the caller then serves in one process)."""
    try:
        prepared = prepare(config_path)
        text, plan = prepared.text, prepared.plan
    except ConfigError:  # changed since it was read a moment ago: serve what was checked
        text = Path(config_path).read_text(encoding="utf-8", errors="replace")
    own_dir = not os.environ.get(MULTIPROC_ENV)
    if own_dir:  # every process's metric values in one directory: the master's admin sums them
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="ferryman-metrics-")
    try:
        return _run_master(plan, config_path, count, text)
    finally:
        if own_dir:
            shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)


def _run_master(plan: "Plan", config_path: str, count: int, text: str) -> int | None:
    members = sum(len(p.members) for p in plan.pools.values())
    try:
        table = MemberTable.create(max(DEFAULT_CAPACITY, 4 * members))
    except OSError as exc:
        log.warning("cannot create the shared member table (%s); serving with one worker process instead of %d",
                    exc.strerror or exc, count)
        return None
    return run_loop(Master(config_path, text, plan, count, table).run())
