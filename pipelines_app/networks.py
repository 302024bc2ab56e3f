"""Which Docker network a pipeline's runs get, and which ones a pipeline may ask for.

A run is on FASTFLOW_RUNNER_NETWORK unless its pipeline.json names a `network` (the Docker
executor's concern; cache warm-ups have a network of their own); a pipeline may
name only the default or a network in FASTFLOW_RUNNER_NETWORKS_ALLOWED (the operator's list:
`none,bridge` unless changed), so a pipeline cannot put itself on the host's network stack or
on a network of other services. Discovery reports a refused network as the pipeline's error (it
cannot run), and the engine checks again before a run starts, in case the list changed since.
"""

from __future__ import annotations

from django.conf import settings

from pipelines_app.spec import PipelineSpec


def network_allowed() -> tuple[str, ...]:
    """The networks a pipeline.json may choose: the default first, then the operator's list."""
    default = settings.FASTFLOW_RUNNER_NETWORK
    return tuple(dict.fromkeys((default, *settings.FASTFLOW_RUNNER_NETWORKS_ALLOWED)))


def network_refusal(network: str) -> str:
    """ "" when a pipeline may run on `network`, else the reason it may not."""
    allowed = network_allowed()
    if network in allowed:
        return ""
    hint = (
        " (the host's own network stack: it reaches every service listening on the host)"
        if network == "host"
        else ""
    )
    return (
        f"network {network!r} is not allowed in this installation{hint}; allowed: "
        f"{', '.join(allowed)} (FASTFLOW_RUNNER_NETWORK, FASTFLOW_RUNNER_NETWORKS_ALLOWED)"
    )


def spec_network_errors(spec: PipelineSpec, source: str) -> list[str]:
    """Discovery's error for a pipeline.json `network` this installation does not allow."""
    refused = network_refusal(spec.network) if spec.network else ""
    return [f"{source}: key 'network': {refused}"] if refused else []
