"""The platform's URLs plus views that fail the ways any view can (a crash, a body over
Django's limit, a CSRF check), for tests/core/test_api_replies.py: what the API answers then is
decided by the middleware and the error handlers, not by the view."""

from django.http import HttpResponse
from django.urls import path
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from rest_framework.views import APIView

from core.urls import handler400, handler500
from core.urls import urlpatterns as platform_urls

__all__ = ["handler400", "handler500", "urlpatterns"]


class Crash(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        raise RuntimeError("a bug")


class PlainCrash(View):
    def post(self, request):
        raise RuntimeError("a bug")


class PlainBody(View):
    """A view that reads request.body, where Django enforces DATA_UPLOAD_MAX_MEMORY_SIZE."""

    def post(self, request):
        return HttpResponse(str(len(request.body)))


class PlainForm(View):
    """A view that is not exempt from CSRF, as an API view never is."""

    def post(self, request):
        return HttpResponse("ok")


urlpatterns = [
    *platform_urls,
    path("api/test/crash", Crash.as_view()),
    path("v1/test/crash", csrf_exempt(PlainCrash.as_view())),
    path("v1/test/body", csrf_exempt(PlainBody.as_view())),
    path("api/test/form", PlainForm.as_view()),
]
