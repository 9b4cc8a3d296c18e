#!/usr/bin/env bash
# Schemathesis against the service's own OpenAPI schema: every operation, stateless, many cases.
# Starts the service on a loopback port, runs the fuzzer, stops the service. Loopback only.
#   bash loadtest/fuzz_api.sh [max-examples]
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18090}
EXAMPLES=${1:-1000}
command -v schemathesis >/dev/null || python -m pip install --quiet schemathesis
bioner serve --port "$PORT" --log-level warning &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break; sleep 0.2; done
status=0
schemathesis run "http://127.0.0.1:$PORT/openapi.json" --checks all --max-examples "$EXAMPLES" --continue-on-failure \
  --exclude-checks negative_data_rejection || status=$?
echo "== server errors seen by the service itself:"
curl -fsS "http://127.0.0.1:$PORT/metrics" | grep -E '^bioner_requests_total\{.*status="5' || echo "none (zero 5xx)"
exit "$status"
