"""Azure ML backends: trainer and preparation jobs, pipelines, registration, online endpoints.

Nothing here is imported by the local path; ``azure-ai-ml`` is imported only by the modules that
build or submit something, and only when they are imported.
"""
