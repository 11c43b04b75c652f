#!/bin/sh
# Validates deploy/ecs/services.yaml (run from anywhere; needs python3 with PyYAML, and cfn-lint:
# `pip install cfn-lint`):
#   1. cfn-lint reports nothing (errors or warnings);
#   2. a plain YAML parser reads it (no `!Ref`-style short tags), as the Swift tests do;
#   3. the PoolsConfiguration default says what deploy/pools.yaml says, and every pool there has
#      an inference task whose inference-service container names that pool and its runtime.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

${CFN_LINT:-cfn-lint} deploy/ecs/services.yaml
echo "cfn-lint: ok"

python3 - <<'EOF'
import sys
import yaml

template = yaml.safe_load(open("deploy/ecs/services.yaml"))
pools_file = yaml.safe_load(open("deploy/pools.yaml"))
problems = []

embedded = yaml.safe_load(template["Parameters"]["PoolsConfiguration"]["Default"])
if embedded != pools_file:
    problems.append("Parameters.PoolsConfiguration.Default differs from deploy/pools.yaml")

urls = {"sdwebui": "http://127.0.0.1:7860", "comfyui": "http://127.0.0.1:8188"}
resources = template["Resources"]
for pool in pools_file["pools"]:
    name, runtime = pool["name"], pool["runtime"]
    logical = "Inference" + "".join(part.capitalize() for part in name.split("-"))
    task = resources.get(logical + "TaskDefinition")
    if task is None or (logical + "Service") not in resources or (logical + "ScalableTarget") not in resources:
        problems.append(f"pool {name}: {logical}TaskDefinition/Service/ScalableTarget missing")
        continue
    containers = {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}
    worker = containers.get("inference-service")
    env = {e["Name"]: e["Value"] for e in (worker or {}).get("Environment", [])}
    expected = {"SDQ_POOL": name, "SDQ_RUNTIME": runtime, "SDQ_RUNTIME_URL": urls.get(runtime)}
    for key, value in expected.items():
        if env.get(key) != value:
            problems.append(f"pool {name}: inference-service {key} is {env.get(key)!r}, not {value!r}")
    if runtime not in containers:
        problems.append(f"pool {name}: no {runtime} runtime container")
    elif containers[runtime].get("ResourceRequirements") != [{"Type": "GPU", "Value": "1"}]:
        problems.append(f"pool {name}: the {runtime} container does not reserve one GPU")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"yaml.safe_load: ok ({len(resources)} resources); pools match deploy/pools.yaml")
EOF
