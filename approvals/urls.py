from django.urls import path

from approvals import views

app_name = "approvals"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("approvals/<int:approval_id>/", views.approval_detail, name="detail"),
    path("approvals/<int:approval_id>/decide/", views.decide, name="decide"),
]
