"""Template tags of the run list (templates/admin/runs_app/pipelinerun/change_list.html)."""

from __future__ import annotations

from django import template
from django.contrib.admin.views.main import ChangeList

from runs_app.admin_run_list import date_links

register = template.Library()


@register.inclusion_tag("admin/date_hierarchy.html")
def run_date_hierarchy(cl: ChangeList) -> dict:
    """The admin's date links, computed from index probes (see `date_links`)."""
    return date_links(cl)
