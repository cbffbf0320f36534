"""The health view (for ferryman's active checks) and the diagnostic view (for ferryman_doctor)."""

from __future__ import annotations

import os
import threading
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import get_script_prefix, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from ferryman.django.conf import proxy_headers, setting
from ferryman.django.request import request_facts
from ferryman.wsgi import ENVIRON_ORIGINAL

_migrated: set[str] = set()  # databases seen fully migrated: that stays true for this code
_lock = threading.Lock()


def _database(alias: str) -> tuple[bool, str]:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as e:  # any driver error means "not reachable" to a health check
        return False, f"unreachable: {type(e).__name__}: {e}"[:300]
    return True, "ok"


def _migrations(alias: str) -> tuple[bool, str]:
    if alias in _migrated:
        return True, "ok"
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connections[alias])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as e:
        return False, f"cannot read migrations: {type(e).__name__}: {e}"[:300]
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        return False, f"{len(plan)} unapplied ({names}{'...' if len(plan) > 5 else ''}); run manage.py migrate"
    with _lock:
        _migrated.add(alias)
    return True, "ok"


@never_cache
@csrf_exempt
def health(request: HttpRequest) -> JsonResponse:
    """200 when the database answers, every migration is applied and the member is not draining;
    503 otherwise, with the reason. Point ferryman's ``health = { path = ..., host = ... }`` here,
    with ``host`` one of ALLOWED_HOSTS (the public host), or Django answers the probe 400."""
    alias = setting("FERRYMAN_HEALTH_DATABASE", DEFAULT_DB_ALIAS)
    db_ok, db_text = _database(alias)
    mig_ok, mig_text = _migrations(alias) if db_ok else (False, "not checked")
    drain_file = setting("FERRYMAN_DRAIN_FILE")
    draining = bool(drain_file) and os.path.exists(drain_file)
    ok = db_ok and mig_ok and not draining
    body = {"status": "ok" if ok else ("draining" if draining and db_ok and mig_ok else "failing"),
            "database": db_text, "migrations": mig_text, "draining": draining}
    return JsonResponse(body, status=200 if ok else 503)


def member_name(request: HttpRequest) -> str:
    """This app server's name: FERRYMAN_MEMBER_NAME, else the address the request arrived at."""
    name = setting("FERRYMAN_MEMBER_NAME")
    if name:
        return str(name)
    original: dict[str, Any] = request.META.get(ENVIRON_ORIGINAL) or {}
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict) and scope.get("ferryman.original"):
        server = scope["ferryman.original"].get("server") or ("", 0)
        return f"{server[0]}:{server[1]}"
    server_name = original.get("SERVER_NAME", request.META.get("SERVER_NAME", ""))
    return f"{server_name}:{original.get('SERVER_PORT', request.META.get('SERVER_PORT', ''))}"


@never_cache
@csrf_exempt
def diagnose(request: HttpRequest) -> JsonResponse:
    """What this request looked like to Django, for ``manage.py ferryman_doctor``.

    Answers only a request that came through ferryman (a trusted proxy, or a valid signature):
    anyone else gets 404 and learns nothing about the deployment.
    """
    facts = request_facts(request)
    if facts is None:
        raise Http404("not found")
    user = getattr(request, "user", None)
    username = user.get_username() if user is not None and user.is_authenticated else None
    return JsonResponse({
        "client": request.META.get("REMOTE_ADDR"),
        "host": request.get_host(),
        "scheme": request.scheme,
        "is_secure": request.is_secure(),
        "port": request.get_port(),
        "script_name": get_script_prefix().rstrip("/"),
        "path": request.path,
        "user": username,
        "remote_user": request.META.get("REMOTE_USER"),
        "absolute_uri": request.build_absolute_uri(get_script_prefix()),
        "reverse": reverse("ferryman-diagnose"),
        "member": member_name(request),
        "mode": "signed" if proxy_headers().signed else ("forwarded" if proxy_headers().forwarded
                                                         else "x-forwarded"),
        "vouched": {"client": facts.client, "host": facts.host, "scheme": facts.scheme, "port": facts.port,
                    "prefix": facts.prefix, "user": facts.user},
    })
