"""Job entrypoints for ``ray job submit`` (see jobs/runtime_env.yaml and cluster/README.md)."""
