"""apisim: an in-repo Kubernetes API server simulator for tests, benchmarks and the demo."""
