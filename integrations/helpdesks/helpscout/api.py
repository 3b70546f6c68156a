"""Help Scout's Mailbox API authenticates with OAuth2 tokens that expire: obtained with the app's client
credentials (https://developer.helpscout.com/mailbox-api/overview/authentication/#client-credentials-flow),
kept in the Django cache until shortly before they expire, and obtained again on a 401 (once per request).

The token request is plain OAuth2 (``POST /v2/oauth2/token``, ``grant_type=client_credentials``); a library
such as requests-oauthlib would bring a second HTTP stack for one POST, and the write-back's own client
already gives timeouts, retries and the source's circuit breaker.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.core.cache import cache

from integrations.helpdesks.http import RestClient, WritebackError

logger = logging.getLogger(__name__)

TOKEN_PATH = "/v2/oauth2/token"


class AccessTokens:
    """The current access token for one app (client id and secret) at one API root."""

    def __init__(self, *, http: RestClient, client_id: str, client_secret: str):
        self.http = http
        self.client_id = client_id
        self.client_secret = client_secret
        fingerprint = hashlib.sha256(f"{http.base_url}\n{client_id}\n{client_secret}".encode()).hexdigest()[:32]
        self.key = f"helpscout:token:{fingerprint}"

    def current(self) -> str:
        token = cache.get(self.key)
        return token if isinstance(token, str) and token else self.renew()

    def renew(self) -> str:
        """A new token from the token endpoint, cached until a margin before its `expires_in`."""
        if not self.client_id or not self.client_secret:
            raise WritebackError("Help Scout needs the app's ID (API user) and secret (API token) to obtain a token")
        answer = self.http.send(
            "POST",
            TOKEN_PATH,
            body={"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret},
        )
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise WritebackError(f"POST {TOKEN_PATH}: the answer has no access_token")
        try:
            expires_in = float(answer.get("expires_in") or 0)
        except (TypeError, ValueError):
            expires_in = 0.0
        # Renewed before it expires: a tenth of its life early (at most five minutes), so a request sent with
        # it does not arrive just after; a token without a lifetime is used for one minute.
        keep = expires_in - min(300.0, expires_in / 10) if expires_in > 0 else 60.0
        cache.set(self.key, token, timeout=max(1, int(keep)))
        return token

    def forget(self) -> None:
        cache.delete(self.key)


class TokenRestClient(RestClient):
    """A `RestClient` that sends Help Scout's current bearer token, and on a 401 renews it and tries once more."""

    def __init__(self, *, tokens_from: RestClient, client_id: str, client_secret: str):
        super().__init__(
            base_url=tokens_from.base_url, headers={}, config=tokens_from.config, breaker=tokens_from.breaker
        )
        self.tokens = AccessTokens(http=tokens_from, client_id=client_id, client_secret=client_secret)

    def send(self, method: str, path: str, **kwargs: Any) -> Any:
        self.tokens.http.config = self.config  # one configuration for the token and the API requests
        self.tokens.http.deadline = self.deadline
        self.headers["Authorization"] = f"Bearer {self.tokens.current()}"
        try:
            return super().send(method, path, **kwargs)
        except WritebackError as exc:
            if exc.status != 401:
                raise
            logger.info("helpscout: %s %s answered 401; renewing the token", method, path)
            self.tokens.forget()
            self.headers["Authorization"] = f"Bearer {self.tokens.renew()}"
            return super().send(method, path, **kwargs)


class ClientCredentialsAuth:
    """Mixed into Help Scout's `Client`: `api_user` is the app id, `api_token` the app secret."""

    http: RestClient
    api_user: str
    api_token: str

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)  # the HelpdeskClient it is mixed into takes them
        self.http = TokenRestClient(tokens_from=self.http, client_id=self.api_user, client_secret=self.api_token)

    def auth_headers(self) -> dict[str, str]:
        return {}  # set per request from the current token
