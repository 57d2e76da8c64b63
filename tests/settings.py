"""Test settings: the production settings plus a table for the effects of test handlers."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-not-a-secret")

from core.settings import *  # noqa: F403
from core.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.effects"]
