"""The serving benchmark's parts: model, request pools, servers, wrk, results (bench_serving.py)."""
