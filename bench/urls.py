"""The product's URLs plus the framework's floors: what any page, any flow start (a new
session holding a value) and any sign-in callback (django.contrib.auth.login) must cost."""

from django.contrib import auth
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.urls import path

from accounts.models import User
from bizible_site.urls import urlpatterns as product


@login_not_required
def bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@login_not_required
def session_floor(request: HttpRequest) -> HttpResponse:
    request.session["floor"] = 1
    return HttpResponse("ok")


@login_not_required
def login_floor(request: HttpRequest) -> HttpResponse:
    user = User.objects.get(username="floor")
    auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponse("ok")


urlpatterns = [
    path("floor/bare", bare),
    path("floor/session", session_floor),
    path("floor/login", login_floor),
    *product,
]
