"""Params: the schema of params.yaml (config, schema) and the profiles that write it."""
