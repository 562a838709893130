"""`composite serve`: every mode as an OpenAI-compatible model, through the LiteLLM proxy.

Modules, one job each:
    auth           the proxy's master key (flag, environment, or generated and stored), key checks
    config         the proxy config we generate (model_list, custom_provider_map) and the merge
                   with a user's own LiteLLM config
    handler        the provider instance the proxy loads (source="serve"), and the run id it
                   hands to the HTTP edge
    edge           the ASGI middleware in front of the proxy: auth errors as 401, run-id header,
                   the /composite/ introspection API
    introspection  the /composite/ API: modes, traces, metrics
    metrics        the SELECTs behind /composite/metrics/summary
    router_dispatch  internal calls whose model is a group of the proxy's router go through it
    cache_runs     a proxy cache hit on a mode is recorded as a run (and named in the response)
    app            the app factory each uvicorn worker calls
    server         options → environment, uvicorn (workers, grace period), shutdown

Nothing here is imported by `composite --help`; the CLI imports it inside the command.
"""
