"""Test settings: the production settings plus a table for the effects of test handlers."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-not-a-secret")
# Not the development settings `make run` leaves in var/local.env (DEBUG=1 would change them).
os.environ["LOCAL_ENV_FILE"] = ""

from core.settings import *  # noqa: F403
from core.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.effects"]

# Hashing a password takes about half a second by design, and no test is about it; every admin
# test creates a staff user, and every browser test logs one in (the web tier runs these too).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
