#!/usr/bin/env python3
"""Ask the RAG service through auth-gateway from a script or a notebook (docs/scripts.md).

Python's standard library only. In a notebook:

    from rag_client import Gateway
    gateway = Gateway("https://api.example.com")
    gateway.login("reader@example.com", getpass.getpass())   # or Gateway(url, api_key="agk_...")
    gateway.ask({"question": "What is a zero-moment point?"})
    gateway.logout()

As a script: GATEWAY_URL, and GATEWAY_API_KEY or GATEWAY_EMAIL and GATEWAY_PASSWORD; the question is
the first argument. It prints one JSON line per step.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime

# Refresh this long before the access token (15 minutes) expires.
REFRESH_MARGIN_SECONDS = 60


class GatewayError(Exception):
    """The gateway's `{ "error", "message" }`, with the HTTP status."""

    def __init__(self, status, error, message):
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error


class Gateway:
    def __init__(self, base_url, api_key=None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.tokens = None

    def _request(self, method, path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("accept", "application/json")
        if data is not None:
            request.add_header("content-type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as failure:
            try:
                answer = json.loads(failure.read().decode())
            except ValueError:
                answer = {}
            raise GatewayError(failure.code, answer.get("error", "unexpected_response"), answer.get("message", failure.reason)) from None

    def login(self, email, password, code=None):
        """Signs in: a 15-minute access token and a 30-day refresh token, no cookie."""
        body = {"email": email, "password": password}
        if code is not None:
            body["code"] = code
        self.tokens = self._request("POST", "/auth/login", body)
        return self.tokens["user"]

    def refresh(self):
        """A new access token and a new refresh token; the old refresh token is dead from now on."""
        self.tokens = self._request("POST", "/auth/token/refresh", {"refreshToken": self.tokens["refreshToken"]})

    def _credentials(self):
        if self.api_key is not None:
            return {"x-api-key": self.api_key}
        if self.tokens is None:
            return {}
        expires = datetime.fromisoformat(self.tokens["expiresAt"].replace("Z", "+00:00")).timestamp()
        if expires - REFRESH_MARGIN_SECONDS <= time.time():
            self.refresh()
        return {"authorization": "Bearer " + self.tokens["token"]}

    def ask(self, body, path="/api/v1/query"):
        """A RAG question; the RAG service learns who asks (and with which key)."""
        return self._request("POST", path, body, self._credentials())

    def me(self):
        return self._request("GET", "/auth/me", headers=self._credentials())["user"]

    def logout(self):
        """Ends this login: its access token and refresh token are refused at once."""
        if self.tokens is None:
            return
        tokens, self.tokens = self.tokens, None
        self._request("POST", "/auth/logout", {"refreshToken": tokens["refreshToken"]}, {"authorization": "Bearer " + tokens["token"]})


def main():
    question = sys.argv[1] if len(sys.argv) > 1 else "What is a zero-moment point?"
    gateway = Gateway(os.environ.get("GATEWAY_URL", "http://localhost:8000"), api_key=os.environ.get("GATEWAY_API_KEY"))
    step = lambda **fields: print(json.dumps(fields), flush=True)  # noqa: E731
    if gateway.api_key is not None:
        step(step="ask", answer=gateway.ask({"question": question}))
        return
    user = gateway.login(os.environ["GATEWAY_EMAIL"], os.environ["GATEWAY_PASSWORD"])
    step(step="login", user=user["id"])
    step(step="ask", answer=gateway.ask({"question": question}))
    old = gateway.tokens
    gateway.refresh()
    step(step="refresh", rotated=old["refreshToken"] != gateway.tokens["refreshToken"])
    step(step="ask", answer=gateway.ask({"question": question}))
    token = gateway.tokens["token"]
    gateway.logout()
    try:
        Gateway(gateway.base_url)._request("GET", "/auth/me", headers={"authorization": "Bearer " + token})
        step(step="logout", refused=False)
    except GatewayError as failure:
        step(step="logout", refused=failure.status == 401)


if __name__ == "__main__":
    try:
        main()
    except GatewayError as failure:
        print(json.dumps({"error": failure.error, "status": failure.status}), file=sys.stderr)
        sys.exit(1)
