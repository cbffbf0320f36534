"""Users authenticated by ferryman reach Django as the ``Remote-User`` request header.

ferryman removes every client-sent copy of that header (and of its ``_``/case aliases) and writes it
only for users who passed its htpasswd check, so Django may believe it. Django's own
RemoteUserMiddleware reads the WSGI variable ``REMOTE_USER``, which a proxy cannot set; this one reads
the header. A request without the header logs out a user that the header had logged in (the session
cookie of /webapps is also sent to the plain-HTTP listener, where nobody vouches for the user); users
of Django's own login form (the /public prefix) stay logged in.
"""

from __future__ import annotations

from django.contrib.auth import middleware


class RemoteUserMiddleware(middleware.RemoteUserMiddleware):
    """``Remote-User`` from ferryman logs the user in."""

    header = "HTTP_REMOTE_USER"
