"""The demo's pages: the request as this app server sees it, an upload form, a health check."""

from __future__ import annotations

import os
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PROTO",
             "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_X_FORWARDED_SERVER",
             "HTTP_REMOTE_USER")


def demo_context(request: HttpRequest) -> dict[str, Any]:
    """Template context of every page: which app server rendered it."""
    return {"server": settings.DEMO_SERVER, "route": settings.DEMO_ROUTE, "pid": os.getpid()}


def seen(request: HttpRequest) -> dict[str, Any]:
    """The request as Django sees it after ferryman and the forwarded-header middleware."""
    user = request.user
    return {
        "server": settings.DEMO_SERVER,
        "route": settings.DEMO_ROUTE,
        "pid": os.getpid(),
        "client": request.META.get("REMOTE_ADDR"),
        "host": request.get_host(),
        "scheme": request.scheme,
        "secure": request.is_secure(),
        "port": request.get_port(),
        "script_name": request.META.get("SCRIPT_NAME", ""),
        "path": request.path,
        "url": request.build_absolute_uri(),
        "user": user.get_username() if user.is_authenticated else None,
        "staff": bool(user.is_authenticated and user.is_staff),
        "backend": request.session.get("_auth_user_backend", "").rsplit(".", 1)[-1] or None,
        "session_key": request.session.session_key,
        "visits": request.session.get("visits", 0),
        "headers": {k[5:].replace("_", "-").title(): request.META[k] for k in FORWARDED if k in request.META},
    }


@never_cache
def index(request: HttpRequest) -> HttpResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return render(request, "showcase/index.html", {"seen": seen(request)})


@never_cache
def whoami(request: HttpRequest) -> JsonResponse:
    if request.GET.get("visit"):
        request.session["visits"] = request.session.get("visits", 0) + 1
    return JsonResponse(seen(request))


class UploadForm(forms.Form):
    file = forms.FileField(label="A file to store in the shared MEDIA_ROOT")


def _uploads() -> list[dict[str, Any]]:
    try:
        _, names = default_storage.listdir("uploads")
    except FileNotFoundError:
        return []
    return [{"name": n, "size": default_storage.size(f"uploads/{n}"),
             "url": default_storage.url(f"uploads/{n}")} for n in sorted(names)]


@never_cache
def upload(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            f = form.cleaned_data["file"]
            name = default_storage.save(f"uploads/{os.path.basename(f.name)}", f)
            messages.success(request, f"{settings.DEMO_SERVER} stored {name} ({f.size} bytes) in "
                                      f"{settings.MEDIA_ROOT}")
            return redirect("upload")
    else:
        form = UploadForm()
    return render(request, "showcase/upload.html", {"form": form, "uploads": _uploads(),
                                                    "media_root": settings.MEDIA_ROOT})
