"""Benchmark scripts: each measures one thing and prints (or writes) its figures; speed targets live here,
not in timed test assertions. Run them as scripts from the repository root (each module's docstring has
its command line)."""
