"""Loopback servers for the demo, the tests and the benchmarks: the demo site (`site`), the one server
launcher (`launcher`: any ASGI app under hypercorn, HTTP/1.1 or HTTP/2 over TLS, with a server-side request
log), the shared ASGI helpers (`asgi`) and throwaway TLS material (`tls`).

Needs the `demo` extra (hypercorn, trustme); `extra` says so clearly when they are missing. Imports nothing
from the rest of the package: only `crawler demo` (crawler/cli/demo.py) uses it.
"""
