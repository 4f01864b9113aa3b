"""`make bench`: the IdP's performance benchmark (run with `python -m bench.run`, see bench/run.py)."""
