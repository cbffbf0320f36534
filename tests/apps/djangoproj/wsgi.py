import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.djangoproj.settings")

from django.core.wsgi import get_wsgi_application as _plain  # noqa: E402

from ferryman.django.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
plain = _plain()  # the misconfigured variant: Django with nothing in front
