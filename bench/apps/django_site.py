"""The Django site, made by Django's own ``startproject`` and ``startapp``, then filled in.

``benchsite`` (settings, urls, wsgi as ``startproject`` writes them) with two apps, ``blog`` and
``shop``, each given two models, a few views and its own ``urls.py``, both in
``INSTALLED_APPS``; the migrations made and applied (an sqlite database), as in a project one
works on. ``blog/views.py`` is the edited module: ``GET /`` answers ``VERSION PID``.

Made once per run (``startproject`` and ``migrate`` take seconds) and copied for each server.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["EDITED", "PROJECT", "blog_views_text", "write_django_site"]

PROJECT = "benchsite"
EDITED = "blog/views.py"

_MODELS = {
    "blog": """from django.db import models


class Post(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    published = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.title


class Comment(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    author = models.CharField(max_length=100)
    text = models.TextField()
""",
    "shop": """from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock = models.PositiveIntegerField(default=0)


class Order(models.Model):
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField(default=1)
    placed = models.DateTimeField(auto_now_add=True)
""",
}

_SHOP_VIEWS = """from django.http import JsonResponse
from django.shortcuts import get_object_or_404

from .models import Product


def products(request):
    return JsonResponse({"products": list(Product.objects.values("id", "name", "stock"))})


def product(request, pk):
    item = get_object_or_404(Product, pk=pk)
    return JsonResponse({"id": item.pk, "name": item.name, "stock": item.stock})
"""

_URLS = {
    "blog": """from django.urls import path

from . import views

urlpatterns = [
    path("", views.version, name="version"),
    path("posts/", views.posts, name="posts"),
    path("posts/<int:pk>/", views.post, name="post"),
]
""",
    "shop": """from django.urls import path

from . import views

urlpatterns = [
    path("", views.products, name="products"),
    path("<int:pk>/", views.product, name="product"),
]
""",
}

_PROJECT_URLS = """from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("shop/", include("shop.urls")),
    path("", include("blog.urls")),
]
"""

_ADMIN = {
    "blog": "from django.contrib import admin\n\nfrom .models import Comment, Post\n\n"
    "admin.site.register(Post)\nadmin.site.register(Comment)\n",
    "shop": "from django.contrib import admin\n\nfrom .models import Order, Product\n\n"
    "admin.site.register(Product)\nadmin.site.register(Order)\n",
}


_STATICFILES = ("'django.contrib.staticfiles',\n", '"django.contrib.staticfiles",\n')


def blog_views_text(version: str) -> str:
    """``blog/views.py`` at ``version``."""
    return f'''import os

from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404

from .models import Post

VERSION = "{version}"


def version(request):
    return HttpResponse(f"{{VERSION}} {{os.getpid()}}", content_type="text/plain")


def posts(request):
    return JsonResponse({{"posts": list(Post.objects.values("id", "title"))}})


def post(request, pk):
    item = get_object_or_404(Post, pk=pk)
    return JsonResponse({{"id": item.pk, "title": item.title, "body": item.body}})
'''


def write_django_site(project: Path, python: str, env: dict[str, str]) -> None:
    """The site in ``project`` (created), with ``python -m django`` and ``manage.py``."""
    project.mkdir(parents=True)

    def run(*args: str) -> None:
        subprocess.run(
            [python, *args], cwd=project, env=env, check=True, capture_output=True, timeout=120
        )

    run("-m", "django", "startproject", PROJECT, ".")
    for app in ("blog", "shop"):
        run("manage.py", "startapp", app)
        (project / app / "models.py").write_text(_MODELS[app])
        (project / app / "urls.py").write_text(_URLS[app])
        (project / app / "admin.py").write_text(_ADMIN[app])
    (project / EDITED).write_text(blog_views_text("v0"))
    (project / "shop/views.py").write_text(_SHOP_VIEWS)
    (project / PROJECT / "urls.py").write_text(_PROJECT_URLS)
    settings = project / PROJECT / "settings.py"
    text = settings.read_text()
    # Django 4.x writes the list with double quotes, 5.x with single ones.
    anchor = next((a for a in _STATICFILES if a in text), None)
    if anchor is None:
        raise ValueError("no 'django.contrib.staticfiles' line in the generated settings.py")
    settings.write_text(text.replace(anchor, anchor + "    'blog',\n    'shop',\n", 1))
    run("manage.py", "makemigrations", "blog", "shop")
    run("manage.py", "migrate")
