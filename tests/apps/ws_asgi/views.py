"""Plain HTTP views of the WebSocket test app (async: they run on the event loop the consumers use)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from tests.apps.ws_asgi import state


def _identity() -> dict[str, object]:
    return {"member": state.MEMBER, "port": state.PORT}


async def ready(request: HttpRequest) -> JsonResponse:
    """200 once the member serves requests: what the launcher waits for."""
    return JsonResponse(_identity())


async def who(request: HttpRequest) -> JsonResponse:
    """Which member answered and the request it saw (path, headers)."""
    return JsonResponse({**_identity(), "path": request.path,
                         "headers": {k: v for k, v in request.headers.items()}})


async def release(request: HttpRequest) -> JsonResponse:
    """Let the stalled consumer of ?key= read again; also says how many messages it had taken."""
    key = request.GET.get("key", "")
    state.release_event(key).set()
    return JsonResponse({**_identity(), "released": key, "taken": state.STALLED.get(key, 0)})


async def stalled(request: HttpRequest) -> JsonResponse:
    """How many messages the stalled consumer of ?key= has taken (1 once it stopped reading)."""
    key = request.GET.get("key", "")
    return JsonResponse({**_identity(), "key": key, "taken": state.STALLED.get(key, 0)})


async def is_open(request: HttpRequest) -> JsonResponse:
    """Whether the WebSocket connection opened with ?key= is still open as far as the app knows."""
    key = request.GET.get("key", "")
    return JsonResponse({**_identity(), "key": key, "open": key in state.OPEN})
