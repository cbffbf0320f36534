"""`manage.py demo_setup`: migrate, then make sure the demo user exists as staff with its password."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate the database and create or update the demo user (FERRYMAN_DEMO_USER/_PASSWORD)."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        name = os.environ.get("FERRYMAN_DEMO_USER", "demo")
        password = os.environ.get("FERRYMAN_DEMO_PASSWORD")
        user, created = get_user_model().objects.get_or_create(username=name)
        user.is_staff = user.is_superuser = user.is_active = True
        if password:
            user.set_password(password)
        user.save()
        self.stdout.write(f"{'created' if created else 'updated'} user {name}")
