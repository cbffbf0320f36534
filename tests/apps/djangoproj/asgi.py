import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.djangoproj.settings")

from ferryman.django.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
