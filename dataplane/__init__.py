"""The `dataplane` command: composes the CLIs of api, scheduler and worker."""
