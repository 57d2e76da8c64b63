import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
application = get_wsgi_application()

from core.runtime import heap  # noqa: E402 - after Django is set up, which it imports

heap.settle()
