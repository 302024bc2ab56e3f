from __future__ import annotations

from django.apps import AppConfig


class RunsAppConfig(AppConfig):
    name = "runs_app"
    verbose_name = "Runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from fastflow_site.health import bearer_endpoint_register, readiness_check_register
        from notifications_app.messages import run_details_register
        from pipelines_app.checks import register_spec_check
        from runs_app.engine.notify import run_message_lines
        from runs_app.environment import encrypted_env_problems
        from runs_app.prometheus import metrics
        from runs_app.readiness import engine_heartbeat_readiness, log_disk_readiness

        readiness_check_register(engine_heartbeat_readiness)
        readiness_check_register(log_disk_readiness)
        # Prometheus scrapes by IP or service name: a bearer scrape skips the host check.
        bearer_endpoint_register("/metrics", metrics)
        # What a notification says about a run (notifications_app sits below this app).
        run_details_register(run_message_lines)
        # Discovery cannot decrypt (pipelines_app knows no secrets); runs can, so runs_app
        # lends it the check that a run would otherwise fail at start.
        register_spec_check(encrypted_env_problems)
