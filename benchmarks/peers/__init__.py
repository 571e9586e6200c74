"""The peers the benchmark runs side by side with our crawler: each is a standalone script run by the peers'
own interpreter (benchmarks/_venv_peers), never imported by the project.

Every script prints one JSON line to stdout at the end: at least `pages` (responses handled) and `seconds`
(the tool's own time from its first request to its last, start-up excluded).
"""
