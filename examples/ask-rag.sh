#!/bin/sh
# Ask the RAG service through auth-gateway with curl and jq (docs/scripts.md).
#
#   GATEWAY_API_KEY=agk_... ./ask-rag.sh "What is a zero-moment point?"
#   GATEWAY_EMAIL=reader@example.com GATEWAY_PASSWORD=... ./ask-rag.sh "What is a zero-moment point?"
#
# GATEWAY_URL defaults to http://localhost:8000. Credentials go to curl on its standard input or in
# a header file, never on its command line (where `ps` would show them).
set -eu
gateway="${GATEWAY_URL:-http://localhost:8000}"
question="${1:?usage: ask-rag.sh QUESTION}"
headers="$(mktemp)"
trap 'rm -f "$headers"' EXIT

ask () {
  jq -n --arg q "$question" '{question: $q}' |
    curl -sS --fail-with-body -H @"$headers" -H 'content-type: application/json' --data-binary @- "$gateway/api/v1/query"
  echo
}

if [ -n "${GATEWAY_API_KEY:-}" ]; then
  printf 'X-API-Key: %s\n' "$GATEWAY_API_KEY" > "$headers"
  ask
  exit
fi

# Log in: a 15-minute access token and a refresh token.
login="$(jq -n --arg e "${GATEWAY_EMAIL:?}" --arg p "${GATEWAY_PASSWORD:?}" '{email: $e, password: $p}' |
  curl -sS --fail-with-body -H 'content-type: application/json' --data-binary @- "$gateway/auth/login")"
printf 'Authorization: Bearer %s\n' "$(printf '%s' "$login" | jq -r .token)" > "$headers"
ask

# A new pair when the access token runs out; the old refresh token is dead from now on.
refreshed="$(printf '%s' "$login" | jq '{refreshToken}' |
  curl -sS --fail-with-body -H 'content-type: application/json' --data-binary @- "$gateway/auth/token/refresh")"
printf 'Authorization: Bearer %s\n' "$(printf '%s' "$refreshed" | jq -r .token)" > "$headers"
ask

# Log out: this login's access and refresh tokens are refused from now on.
printf '%s' "$refreshed" | jq '{refreshToken}' |
  curl -sS --fail-with-body -o /dev/null -H @"$headers" -H 'content-type: application/json' --data-binary @- "$gateway/auth/logout"
