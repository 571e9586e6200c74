"""Authentication for the shared client: basic, bearer, and OAuth2 client credentials.

The OAuth2 flow fetches a token once through the same client, shares it across all workers, refreshes
it shortly before it expires, and once more on a 401 (a token revoked early).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncGenerator, Generator

import httpx

from crawler.config.job import AuthConfig, OAuth2Config

__all__ = ["BearerAuth", "OAuth2ClientCredentials", "build_auth"]


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class OAuth2ClientCredentials(httpx.Auth):
    requires_response_body = True
    _EARLY_REFRESH = 30.0  # seconds before expiry

    def __init__(self, config: OAuth2Config) -> None:
        self.config = config
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock: asyncio.Lock | None = None
        self.token_fetches = 0

    def _token_request(self, request: httpx.Request) -> httpx.Request:
        """The token request, with the deadlines of the `request` it authorises: a request built here (not by
        the client) carries no timeout of its own, and a token endpoint that never answers would hang."""
        data = {"grant_type": "client_credentials"}
        if self.config.scope:
            data["scope"] = self.config.scope
        credentials = f"{self.config.client_id}:{self.config.client_secret}".encode()
        headers = {"Accept": "application/json", "Authorization": "Basic " + base64.b64encode(credentials).decode()}
        timeout = request.extensions.get("timeout")
        return httpx.Request("POST", self.config.token_url, data=data, headers=headers,
                             extensions={"timeout": timeout} if timeout else None)  # fmt: skip

    def _store(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise httpx.HTTPStatusError(f"OAuth2 token request failed with HTTP {response.status_code}",
                                        request=response.request, response=response)  # fmt: skip
        payload = response.json()
        token = payload.get("access_token")
        if not isinstance(token, str):
            raise httpx.DecodingError("OAuth2 token response has no access_token", request=response.request)
        self._token = token
        expires_in = payload.get("expires_in")
        self._expires_at = time.monotonic() + float(expires_in) - self._EARLY_REFRESH if expires_in else float("inf")
        self.token_fetches += 1

    def _valid(self) -> bool:
        return self._token is not None and time.monotonic() < self._expires_at

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._valid():
            token_response = yield self._token_request(request)
            token_response.read()
            self._store(token_response)
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:
            token_response = yield self._token_request(request)
            token_response.read()
            self._store(token_response)
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        if not self._valid():
            async with self._lock:
                if not self._valid():
                    token_response = yield self._token_request(request)
                    await token_response.aread()
                    self._store(token_response)
        used = self._token
        request.headers["Authorization"] = f"Bearer {used}"
        response = yield request
        if response.status_code == 401:
            async with self._lock:
                if self._token == used:  # nobody refreshed it meanwhile
                    token_response = yield self._token_request(request)
                    await token_response.aread()
                    self._store(token_response)
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


def build_auth(config: AuthConfig | None) -> httpx.Auth | None:
    if config is None:
        return None
    if config.basic is not None:
        return httpx.BasicAuth(*config.basic)
    if config.bearer is not None:
        return BearerAuth(config.bearer)
    if config.oauth2 is not None:
        return OAuth2ClientCredentials(config.oauth2)
    return None
