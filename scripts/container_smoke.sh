#!/usr/bin/env bash
# Build the Dockerfile without a Docker engine (buildah, vfs, chroot isolation) on a local
# Debian bookworm base made by debootstrap, start the container, wait for /ready, POST real
# sentences to /ner (the default model, and the JNLPBA bundle by name) and check the entities,
# scrape /metrics, stop it with SIGTERM.
#
#   sudo bash scripts/container_smoke.sh          (root: debootstrap and buildah need it)
#
# Needs the Debian packages buildah and debootstrap (installed if missing), and a committed
# default model under models/. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/bioner:smoke}
BASE_IMAGE=${BASE_IMAGE:-localhost/bioner-base:bookworm}
BASE_DIR=${BASE_DIR:-/var/tmp/bioner-bookworm-rootfs}
PORT=${PORT:-18080}
CA=${CA:-/etc/ssl/certs/ca-certificates.crt}
STORE=(--storage-driver vfs)

command -v buildah >/dev/null && command -v debootstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap; }

if ! buildah "${STORE[@]}" images --quiet "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "== making the base image from Debian packages"
  [ -x "$BASE_DIR/usr/bin/python3" ] || debootstrap --variant=minbase --include=python3,python3-venv bookworm "$BASE_DIR"
  ctr=$(buildah "${STORE[@]}" from scratch)
  mnt=$(buildah "${STORE[@]}" mount "$ctr")
  cp -a "$BASE_DIR"/. "$mnt"/
  rm -rf "$mnt"/var/cache/apt/archives/*.deb "$mnt"/var/lib/apt/lists/*
  buildah "${STORE[@]}" umount "$ctr"
  buildah "${STORE[@]}" commit --rm "$ctr" "$BASE_IMAGE"
fi

echo "== building $IMAGE"
secret=()
[ -f "$CA" ] && secret=(--secret "id=pipcert,src=$CA")
buildah "${STORE[@]}" bud --isolation chroot --pull=never --layers=false --format docker \
  --build-arg "BASE=$BASE_IMAGE" "${secret[@]}" --target cpu -t "$IMAGE" .
buildah "${STORE[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"

echo "== starting a container on 127.0.0.1:$PORT"
ctr=$(buildah "${STORE[@]}" from --pull=never "$IMAGE")
cleanup() { buildah "${STORE[@]}" rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT
buildah "${STORE[@]}" run --isolation chroot --user 10001 --env BIONER_PORT="$PORT" --env BIONER_HOST=127.0.0.1 \
  "$ctr" -- /opt/venv/bin/bioner serve >/tmp/bioner-container.log 2>&1 &
runner=$!
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
  kill -0 "$runner" 2>/dev/null || { cat /tmp/bioner-container.log; exit 1; }
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/ready"; echo

echo "== POST /ner: the default (five heads) and, by name, the JNLPBA bundle and its fast variant"
default=$(curl -fsS -H 'content-type: application/json' "http://127.0.0.1:$PORT/ner" \
  -d '{"text": "Tamoxifen reduced the risk of breast cancer in women carrying BRCA1 mutations, and cisplatin caused nephrotoxicity in mice."}')
jnlpba=$(curl -fsS -H 'content-type: application/json' "http://127.0.0.1:$PORT/ner" \
  -d '{"model": "bioner-minilm-jnlpba", "text": "IL-2 gene expression and NF-kappa B activation through CD28 requires reactive oxygen production by 5-lipoxygenase in human T cells."}')
fast=$(curl -fsS -H 'content-type: application/json' "http://127.0.0.1:$PORT/ner" \
  -d '{"model": "bioner-minilm-l3-jnlpba", "text": "IL-2 gene expression and NF-kappa B activation through CD28 requires reactive oxygen production by 5-lipoxygenase in human T cells."}')
echo "$default"; echo "$jnlpba"; echo "$fast"
python3 - "$default" "$jnlpba" "$fast" <<'PY'
import json, sys
default, jnlpba, fast = (json.loads(arg) for arg in sys.argv[1:4])
labels = {e["label"] for e in default["entities"]}
assert default["model"]["name"] == "bioner-minilm-joint", default["model"]
assert {"Chemical", "Disease", "GENE", "Species"} <= labels, labels
found = {(e["text"], e["label"]) for e in jnlpba["entities"]}
assert jnlpba["model"]["name"] == "bioner-minilm-jnlpba", jnlpba["model"]
assert ("IL-2 gene", "DNA") in found, found
assert any(label == "protein" for _, label in found), found
assert fast["model"]["name"] == "bioner-minilm-l3-jnlpba", fast["model"]
assert ("IL-2 gene", "DNA") in {(e["text"], e["label"]) for e in fast["entities"]}, fast["entities"]
print("entities OK:", sorted(labels), sorted(found))
PY

echo "== /metrics"
curl -fsS "http://127.0.0.1:$PORT/metrics" | grep -E '^bioner_(requests_total|model_info|entities_total)' 

echo "== who runs it, what is inside"
mnt=$(buildah "${STORE[@]}" mount "$ctr")
test ! -e "$mnt/opt/venv/lib/python3.11/site-packages/torch" && echo "no torch in the image"
test ! -e "$mnt/usr/bin/gcc" && echo "no compiler in the image"
test ! -e "$mnt/etc/ssl/certs/pipcert" && ! grep -rqs PIP_CERT "$mnt/etc/environment" && echo "no pip certificate left in the image"
buildah "${STORE[@]}" umount "$ctr" >/dev/null

echo "== SIGTERM"
# chroot isolation: the server is a host process; signal it, not the buildah client.
pkill -TERM -f "^/opt/venv/bin/python3? /opt/venv/bin/bioner serve" || pkill -TERM -f "/opt/venv/bin/bioner serve$"
status=0
wait "$runner" || status=$?
echo "container exited $status"
exit "$status"
