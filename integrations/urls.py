from django.urls import path

from integrations import views

urlpatterns = [
    path("webhooks/<str:vendor>/<int:source_id>", views.helpdesk_webhook, name="helpdesk-webhook"),
    path("api/tickets", views.api_tickets_create, name="api-tickets"),
    path("api/tickets/<int:ticket_id>", views.api_ticket_detail, name="api-ticket"),
    path("api/openapi.json", views.api_openapi, name="api-openapi"),
]
