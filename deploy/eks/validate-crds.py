#!/usr/bin/env python3
"""Offline checks of rendered sdq EKS manifests (the output of `kubectl kustomize`).

  validate-crds.py RENDERED.yaml --builtin-out FILE [--pools POOLS.yaml] [--pools-copy COPY.yaml]
  validate-crds.py --expect-invalid FILE...

1. Splits the stream: objects of the CRD groups (keda.sh, karpenter.sh, karpenter.k8s.aws) are
   validated here against the JSON Schemas in schemas/ (authored for sdq from the CRDs, see the
   README); every other object is written to --builtin-out for kubernetes-validate. An object of
   a CRD group with no schema here is an error, so nothing goes unvalidated.
2. With --pools: checks across objects that no schema can express (the deployment matches
   pools.yaml, queue names, region/account consistency, references between objects, no
   PLACEHOLDER left).
3. With --pools-copy: the copy under base/ must equal deploy/pools.yaml in content.

--expect-invalid: each file must FAIL the schema check (the checker's own self-test).

Needs: PyYAML, jsonschema (>= 4.18, draft 2020-12).
"""

import argparse
import json
import re
import sys
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

HERE = Path(__file__).resolve().parent
SCHEMA_DIR = HERE / "schemas"
CRD_GROUPS = {"keda.sh", "karpenter.sh", "karpenter.k8s.aws"}
# Markers of the base's unset values (any case; the base region is "zz-placeholder-1", a
# syntactically valid region so that the base alone passes the schemas).
PLACEHOLDERS = ("PLACEHOLDER", "000000000000")
RUNTIME_PORTS = {"sdwebui": 7860, "comfyui": 8188}
QUEUE_URL = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([0-9]{12})/([A-Za-z0-9_.-]+)$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::([0-9]{12}):role/[\w+=,.@/-]+$")


def load_schemas():
    schemas = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        props = schema["properties"]
        key = (props["apiVersion"]["const"], props["kind"]["const"])
        schemas[key] = (path.name, Draft202012Validator(schema))
    return schemas


def group_of(api_version):
    return api_version.split("/")[0] if "/" in api_version else ""


def ident(doc):
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{doc.get('kind')}/{(ns + '/') if ns else ''}{meta.get('name')}"


def schema_errors(doc, schemas):
    """Errors of one CRD-group object against its schema (plus the CEL rules done in code)."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in schemas:
        return [f"no schema in {SCHEMA_DIR.name}/ for {key[0]} {key[1]}"]
    name, validator = schemas[key]
    errors = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{path}: {error.message} [{name}]")
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    if key == ("keda.sh/v1alpha1", "ScaledObject"):
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if isinstance(low, int) and isinstance(high, int) and low > high:
            errors.append("spec: minReplicaCount must be less than or equal to maxReplicaCount [CEL]")
    if key == ("karpenter.k8s.aws/v1", "EC2NodeClass"):
        roots = [m for m in spec.get("blockDeviceMappings") or [] if isinstance(m, dict) and m.get("rootVolume")]
        if len(roots) > 1:
            errors.append("spec/blockDeviceMappings: must have only one blockDeviceMappings with rootVolume [CEL]")
        # EBS volume size bounds of the CRD (the schema checks the form): 64 TB at most.
        limits = {"Gi": 59000, "G": 64000, "Ti": 58, "T": 64}
        for i, m in enumerate(spec.get("blockDeviceMappings") or []):
            size = re.fullmatch(r"([0-9]+)(Gi|G|Ti|T)", str(((m or {}).get("ebs") or {}).get("volumeSize", "")))
            if size and int(size.group(1)) > limits[size.group(2)]:
                errors.append(f"spec/blockDeviceMappings/{i}/ebs/volumeSize: {size.group(0)} is above the EBS maximum")
    return errors


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env") or [] if "name" in e}


def semantic_errors(docs, pools_file, text):
    errs = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)

    def named(kind, name, namespace=None):
        for d in by_kind.get(kind, []):
            m = d.get("metadata") or {}
            if m.get("name") == name and (namespace is None or m.get("namespace") == namespace):
                return d
        return None

    for marker in PLACEHOLDERS:
        if marker.lower() in text.lower():
            lines = [i + 1 for i, line in enumerate(text.splitlines()) if marker.lower() in line.lower()]
            errs.append(f"unreplaced {marker} in the rendered manifests (lines {lines[:10]}); set it in the overlay's settings.yaml")

    # Every namespaced object is in one namespace, which the stream creates.
    namespaces = {(d.get("metadata") or {}).get("namespace") for d in docs
                  if d.get("kind") in {"Deployment", "ServiceAccount", "ConfigMap", "ScaledObject",
                                       "TriggerAuthentication", "PodDisruptionBudget", "NetworkPolicy"}}
    if len(namespaces) != 1 or None in namespaces:
        errs.append(f"namespaced objects must share one explicit namespace, found {sorted(map(str, namespaces))}")
    else:
        ns = next(iter(namespaces))
        if not named("Namespace", ns):
            errs.append(f"Namespace {ns} is not part of the manifests")

    env_maps = [d for d in by_kind.get("ConfigMap", []) if (d["metadata"]["name"]).startswith("sdq-env")]
    if len(env_maps) != 1:
        errs.append("expected exactly one ConfigMap sdq-env-*")
        return errs
    shared_env = env_maps[0].get("data") or {}
    stack, region = shared_env.get("SDQ_STACK"), shared_env.get("AWS_REGION")

    # IRSA: every workload's ServiceAccount exists and names an IAM role.
    role_accounts = {}
    for sa in by_kind.get("ServiceAccount", []):
        arn = ((sa["metadata"].get("annotations") or {}).get("eks.amazonaws.com/role-arn")) or ""
        match = ROLE_ARN.match(arn)
        if not match:
            errs.append(f"{ident(sa)}: eks.amazonaws.com/role-arn {arn!r} is not an IAM role ARN")
        else:
            role_accounts[sa["metadata"]["name"]] = match.group(1)

    nodepools = {d["metadata"]["name"]: d for d in by_kind.get("NodePool", [])}
    nodeclasses = {d["metadata"]["name"] for d in by_kind.get("EC2NodeClass", [])}
    for name, pool in nodepools.items():
        ref = pool["spec"]["template"]["spec"]["nodeClassRef"]
        if ref.get("kind") != "EC2NodeClass" or ref.get("name") not in nodeclasses:
            errs.append(f"NodePool {name}: nodeClassRef {ref} names no EC2NodeClass of the manifests")

    for dep in by_kind.get("Deployment", []):
        pod = dep["spec"]["template"]["spec"]
        sa = pod.get("serviceAccountName")
        if sa not in role_accounts:
            errs.append(f"{ident(dep)}: serviceAccountName {sa!r} is not an IRSA ServiceAccount of the manifests")
        target = (pod.get("nodeSelector") or {}).get("karpenter.sh/nodepool")
        if target is not None:
            if target not in nodepools:
                errs.append(f"{ident(dep)}: nodeSelector karpenter.sh/nodepool={target} names no NodePool")
            else:
                for taint in nodepools[target]["spec"]["template"]["spec"].get("taints") or []:
                    if not any(t.get("key") == taint["key"] and t.get("effect") in (None, taint["effect"])
                               and (t.get("operator") == "Exists" or t.get("value") == taint.get("value"))
                               for t in pod.get("tolerations") or []):
                        errs.append(f"{ident(dep)}: does not tolerate taint {taint['key']}:{taint['effect']} of NodePool {target}")
        sidecars = [c for c in pod.get("initContainers") or [] if c.get("name") == "otel-collector"]
        if not sidecars or sidecars[0].get("restartPolicy") != "Always":
            errs.append(f"{ident(dep)}: no otel-collector native sidecar")
        sleeps = [((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
                  for c in pod.get("containers", [])]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if max(sleeps + [0]) + 10 > grace:
            errs.append(f"{ident(dep)}: terminationGracePeriodSeconds {grace} leaves under 10 s after the preStop sleep {max(sleeps)}")
        for c in pod.get("containers", []):
            if c["image"].split("/")[-1].split(":")[0] in {"dispatcher", "result-writer", "inference-service"}:
                if not any(ref.get("configMapRef", {}).get("name", "").startswith("sdq-env") for ref in c.get("envFrom") or []):
                    errs.append(f"{ident(dep)}/{c['name']}: does not take the sdq-env ConfigMap")
                if not any(m.get("mountPath") == "/etc/sdq" for m in c.get("volumeMounts") or []):
                    errs.append(f"{ident(dep)}/{c['name']}: pools file not mounted at /etc/sdq")

    # pools.yaml <-> inference Deployments <-> ScaledObjects <-> queues.
    pools = yaml.safe_load(Path(pools_file).read_text())["pools"]
    pool_names = {p["name"] for p in pools}
    inference = {d["metadata"]["name"] for d in by_kind.get("Deployment", []) if d["metadata"]["name"].startswith("inference-")}
    for extra in sorted(inference - {f"inference-{n}" for n in pool_names}):
        errs.append(f"Deployment {extra} has no pool in {pools_file}")
    scaled = by_kind.get("ScaledObject", [])
    for pool in pools:
        name, runtime = pool["name"], pool["runtime"]
        dep = named("Deployment", f"inference-{name}")
        if not dep:
            errs.append(f"pool {name}: no Deployment inference-{name}")
            continue
        pod = dep["spec"]["template"]["spec"]
        workers = [c for c in pod["containers"] if env_of(c).get("SDQ_POOL") is not None]
        if len(workers) != 1:
            errs.append(f"pool {name}: Deployment inference-{name} needs exactly one container with SDQ_POOL")
            continue
        env = env_of(workers[0])
        port = RUNTIME_PORTS.get(runtime)
        if env.get("SDQ_POOL") != name or env.get("SDQ_RUNTIME") != runtime or env.get("SDQ_RUNTIME_URL") != f"http://127.0.0.1:{port}":
            errs.append(f"pool {name}: inference-service env {env} does not match runtime {runtime} on port {port}")
        if not any(p.get("containerPort") == port for c in pod["containers"] for p in c.get("ports") or []):
            errs.append(f"pool {name}: no container exposes the {runtime} port {port}")
        gpus = sum(int(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0)) for c in pod["containers"])
        if gpus != 1:
            errs.append(f"pool {name}: expected one nvidia.com/gpu in limits, found {gpus}")
        objs = [s for s in scaled if s["spec"]["scaleTargetRef"].get("name") == f"inference-{name}"]
        if len(objs) != 1:
            errs.append(f"pool {name}: expected one ScaledObject for inference-{name}, found {len(objs)}")
            continue
        so = objs[0]
        spec = so["spec"]
        if spec["scaleTargetRef"].get("kind", "Deployment") != "Deployment":
            errs.append(f"{ident(so)}: scaleTargetRef must be the Deployment")
        if spec.get("minReplicaCount", 0) != 0:
            errs.append(f"{ident(so)}: minReplicaCount must be 0 (scale to zero)")
        queues = []
        for trig in spec["triggers"]:
            if trig["type"] != "aws-sqs-queue":
                errs.append(f"{ident(so)}: unexpected trigger type {trig['type']}")
                continue
            md = trig["metadata"]
            ref = (trig.get("authenticationRef") or {}).get("name")
            if not named("TriggerAuthentication", ref, so["metadata"].get("namespace")):
                errs.append(f"{ident(so)}: authenticationRef {ref!r} names no TriggerAuthentication in its namespace")
            if md.get("scaleOnInFlight") != "true":
                errs.append(f"{ident(so)}: scaleOnInFlight must be \"true\" (a busy pool must not scale to zero)")
            if "activationQueueLength" not in md:
                errs.append(f"{ident(so)}: activationQueueLength not set")
            match = QUEUE_URL.match(md.get("queueURL", ""))
            if not match:
                errs.append(f"{ident(so)}: queueURL {md.get('queueURL')!r} is not an SQS queue URL")
                continue
            url_region, account, queue = match.groups()
            queues.append(queue)
            if not (url_region == md.get("awsRegion") == region):
                errs.append(f"{ident(so)}: region differs: queueURL {url_region}, awsRegion {md.get('awsRegion')}, AWS_REGION {region}")
            sa_account = role_accounts.get(pod.get("serviceAccountName"))
            if sa_account and sa_account != account:
                errs.append(f"{ident(so)}: queue account {account} differs from the IRSA role's account {sa_account}")
        expected = [f"{stack}-high-{name}", f"{stack}-pool-{name}"]
        if sorted(queues) != sorted(expected):
            errs.append(f"{ident(so)}: triggers on {queues}, expected {expected}")

    # ECR images from another region are legitimate (a central registry) but often a copy-paste
    # slip between overlays: a warning only.
    for dep in by_kind.get("Deployment", []):
        pod = dep["spec"]["template"]["spec"]
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            m = re.match(r"^([0-9]{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/", c["image"])
            if m and m.group(2) != region:
                print(f"WARN {ident(dep)}/{c['name']}: image from ECR in {m.group(2)}, AWS_REGION is {region}")
    return errs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rendered", nargs="?")
    parser.add_argument("--builtin-out")
    parser.add_argument("--pools")
    parser.add_argument("--pools-copy")
    parser.add_argument("--expect-invalid", nargs="+", metavar="FILE")
    args = parser.parse_args()
    schemas = load_schemas()

    if args.expect_invalid:
        failed = False
        for path in args.expect_invalid:
            text = Path(path).read_text()
            expect = re.search(r"^# expect: (.+)$", text, re.MULTILINE)
            if not expect:
                print(f"FAIL {path}: no '# expect: <part of the error>' line")
                failed = True
                continue
            docs = [d for d in yaml.safe_load_all(text) if d]
            errors = [e for d in docs for e in schema_errors(d, schemas)]
            hits = [e for e in errors if expect.group(1).strip() in e]
            if hits:
                print(f"ok (rejected as expected) {Path(path).name}: {hits[0]}")
            else:
                print(f"FAIL {path}: expected an error containing {expect.group(1).strip()!r}, got {errors or 'none'}")
                failed = True
        return 1 if failed else 0

    if not args.rendered or not args.builtin_out:
        parser.error("RENDERED and --builtin-out are required")
    text = Path(args.rendered).read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    builtin, failures, checked = [], [], 0
    for doc in docs:
        if group_of(doc.get("apiVersion", "")) in CRD_GROUPS:
            checked += 1
            failures += [f"{ident(doc)}: {e}" for e in schema_errors(doc, schemas)]
        else:
            builtin.append(doc)
    Path(args.builtin_out).write_text(yaml.safe_dump_all(builtin, sort_keys=False))
    print(f"CRD objects checked against {SCHEMA_DIR.name}/: {checked}; built-in objects for kubernetes-validate: {len(builtin)}")

    if args.pools:
        failures += [f"semantic: {e}" for e in semantic_errors(docs, args.pools, text)]
    if args.pools_copy and args.pools:
        if yaml.safe_load(Path(args.pools).read_text()) != yaml.safe_load(Path(args.pools_copy).read_text()):
            failures.append(f"{args.pools_copy} differs from {args.pools}: copy it again")

    for f in failures:
        print(f"ERROR {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
