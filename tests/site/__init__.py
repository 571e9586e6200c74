"""The loopback test site: an ASGI app (`app.py`) served by hypercorn in a subprocess (`server.py`),
used by the test suite, the benchmarks and `make demo` (`demo.py`). Import `SiteServer` from
`tests.site.server`."""
