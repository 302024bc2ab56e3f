from django.urls import path

from accounts_app import views

urlpatterns = [
    path("login-link/<str:token>", views.login_link, name="login_link"),
]
