"""App configuration: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig


class FerrymanConfig(AppConfig):
    name = "ferryman.django"
    label = "ferryman"
    verbose_name = "ferryman (behind the proxy)"

    def ready(self) -> None:
        from ferryman.django import checks  # noqa: F401  (registers them)
