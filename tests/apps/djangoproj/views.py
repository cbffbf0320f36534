from django.http import HttpResponseRedirect, JsonResponse
from django.urls import reverse


def whoami(request):
    """What Django makes of this request: the facts a proxied app most often gets wrong."""
    return JsonResponse({
        "user": request.user.get_username() if request.user.is_authenticated else None,
        "host": request.get_host(),
        "is_secure": request.is_secure(),
        "absolute_uri": request.build_absolute_uri(),
        "root_uri": request.build_absolute_uri("/"),
        "remote_addr": request.META.get("REMOTE_ADDR"),
        "reverse": reverse("whoami"),
        "path": request.path,
        "port": request.get_port(),
    })


def go(request):
    """A redirect built the usual way (reverse + HttpResponseRedirect)."""
    return HttpResponseRedirect(reverse("whoami"))
