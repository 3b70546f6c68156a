from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from triage import views as triage_views

# JSON for the API's and the webhooks' addresses, the site's pages for the rest (`integrations.views`).
handler404 = "integrations.views.page_not_found"
handler500 = "integrations.views.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tickets/<int:ticket_id>/", triage_views.ticket_trace, name="ticket-trace"),
    path("tickets/<int:ticket_id>/mishandled/", triage_views.ticket_mishandled, name="ticket-mishandled"),
    path("tickets/<int:ticket_id>/actions/<int:action_id>/settle/", triage_views.action_settle, name="action-settle"),
    path("reports/", triage_views.reports, name="reports"),
    path("", include("integrations.urls")),
    path("", include("approvals.urls")),
]
