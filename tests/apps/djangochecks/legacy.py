"""The classic mod_wsgi-era subclass: RemoteUserMiddleware reading the HTTP header."""

from django.contrib.auth.middleware import RemoteUserMiddleware


class HttpRemoteUserMiddleware(RemoteUserMiddleware):
    header = "HTTP_REMOTE_USER"
