"""Orchestration: the DVC stage graph, the stage runner, and the Prefect flows that run stages on a
work pool."""
