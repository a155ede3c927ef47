#!/usr/bin/env bash
# The Kubernetes manifests, offline (no cluster): renders every Kustomize overlay of cluster-config/kubernetes,
# checks that rendered/ holds exactly that (the tests read rendered/), and validates every object against
# Kubernetes' schemas (tools/k8s-validate: npm packages pinned by its package-lock.json). Then proves that the
# validator refuses a misspelt field and a wrong type, in a fixture and in a rendered overlay.
#   scripts/check-k8s-manifests.sh           check (CI)
#   scripts/check-k8s-manifests.sh --write   re-render rendered/*.yaml after editing base/ or overlays/
# kustomize: `kubectl kustomize` (kubectl 1.14 and later; kustomize v5 renders this layout), else `kustomize build`.
set -euo pipefail
cd "$(dirname "$0")/.."
k8s=cluster-config/kubernetes
validator=tools/k8s-validate
write=0
[ "${1:-}" = --write ] && write=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "k8s manifests: $*" >&2; exit 1; }

render() {
  if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then kubectl kustomize "$1"
  elif command -v kustomize >/dev/null; then kustomize build "$1"
  else return 127
  fi
}
header() { echo "# Rendered from overlays/$1 by scripts/check-k8s-manifests.sh --write: edit base/ or overlays/, not this file."; }

overlays=$(cd "$k8s/overlays" && ls -d */ | tr -d /)
[ -n "$overlays" ] || fail "no overlays under $k8s/overlays"
if render "$k8s/overlays/cpu" >/dev/null 2>"$tmp/probe"; then
  command -v kubectl >/dev/null && kubectl version --client 2>/dev/null | grep -i kustomize || true
  for o in $overlays; do
    { header "$o"; render "$k8s/overlays/$o"; } >"$tmp/$o.yaml" || fail "kustomize could not render overlays/$o"
    if [ "$write" = 1 ]; then
      cp "$tmp/$o.yaml" "$k8s/rendered/$o.yaml"
      echo "wrote $k8s/rendered/$o.yaml"
    elif ! diff -u "$k8s/rendered/$o.yaml" "$tmp/$o.yaml" >"$tmp/$o.diff"; then
      cat "$tmp/$o.diff" >&2
      fail "$k8s/rendered/$o.yaml is not what overlays/$o renders: run scripts/check-k8s-manifests.sh --write and commit it"
    fi
  done
  for f in "$k8s"/rendered/*.yaml; do
    o=$(basename "$f" .yaml)
    [ -d "$k8s/overlays/$o" ] || fail "$f has no overlay overlays/$o: delete it"
  done
  echo "rendered: $(echo $overlays) (identical to $k8s/rendered/)"
else
  [ "$write" = 0 ] || fail "no kustomize to render with: install kubectl (it has kustomize built in) or kustomize"
  # A machine without kubectl still validates what the tests run; the up-to-date check needs kustomize.
  echo "k8s manifests: WARNING: no kustomize (kubectl kustomize / kustomize build) here: rendered/ is validated but" \
       "not compared with the overlays; install kubectl to check that too" >&2
  [ "${GANCLUSTER_REQUIRE_KUSTOMIZE:-}" != 1 ] || fail "GANCLUSTER_REQUIRE_KUSTOMIZE=1 and no kustomize"
fi

command -v npm >/dev/null || fail "npm (Node.js 20 or later) is needed for the schema validation (apt-get install nodejs npm)"
# npm ci: exactly the package-lock.json versions (skipped when they are installed already).
if ! (cd "$validator" && npm ls --depth=0 >/dev/null 2>&1); then
  (cd "$validator" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>"$tmp/npm.log") \
    || { cat "$tmp/npm.log" >&2; fail "npm ci in $validator failed"; }
fi
node "$validator/validate.mjs" "$k8s"/rendered/*.yaml

# The validator must refuse what the API server would: each EXPECT line of the fixture named in its output...
if node "$validator/validate.mjs" "$validator/fixtures/invalid.yaml" >"$tmp/invalid.out"; then
  cat "$tmp/invalid.out" >&2; fail "the validator accepted $validator/fixtures/invalid.yaml"
fi
grep -o 'EXPECT: .*' "$validator/fixtures/invalid.yaml" | sed 's/^EXPECT: //' | while IFS= read -r expected; do
  grep -qF -- "$expected" "$tmp/invalid.out" || { cat "$tmp/invalid.out" >&2; fail "the validator did not report: $expected"; }
done
# ...and a typo and a wrong type in a real rendered overlay.
sed -e 's/terminationGracePeriodSeconds:/terminationGracePeriodSecond:/' -e 's/containerPort: 8558/containerPort: "8558"/' \
  "$k8s/rendered/cpu.yaml" >"$tmp/broken.yaml"
if node "$validator/validate.mjs" "$tmp/broken.yaml" >"$tmp/broken.out"; then fail "the validator accepted a misspelt rendered overlay"; fi
grep -q 'unknown field "terminationGracePeriodSecond"' "$tmp/broken.out" && grep -q 'containerPort must be integer' "$tmp/broken.out" \
  || { cat "$tmp/broken.out" >&2; fail "the validator missed the typo or the wrong type in the rendered overlay"; }
echo "k8s manifests: valid; the validator refuses misspelt fields and wrong types"
