"""WSGI entry point of every demo app server: Django behind ferryman.

gunicorn runs with ``SCRIPT_NAME=/webapps`` (the path of the member URLs), and
``ferryman.django.wsgi`` replaces it with the public prefix that ferryman sends (/webapps or
/public), so Django builds public URLs under either.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

from ferryman.django.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
