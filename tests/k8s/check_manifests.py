"""Checks deploy/k8s/ without a cluster.

1. Every built-in resource validates strictly (no unknown fields) against the
   Kubernetes API schemas bundled in the `kubernetes-validate` package.
2. The manifests agree with each other and with the binary: selectors match
   labels, probes ask ports that the containers listen on, workers and KEDA
   point at the coordinator's Service and port, every Secret reference
   exists, the ScaledObject uses only KEDA's fields and the scaler's
   metadata, and `groksweep` accepts every container's arguments.

Usage: python check_manifests.py DEPLOY_K8S_DIR GROKSWEEP_BINARY
"""

import subprocess
import sys
from pathlib import Path

import yaml

directory, binary = Path(sys.argv[1]), sys.argv[2]
problems = []


def problem(text):
    problems.append(text)


files = sorted(directory.glob("*.yaml"))
documents = []
for path in files:
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            documents.append((path.name, document))

# 1. Schemas (the ScaledObject is a CRD: checked by hand below).
builtin = [path for path in files if all(d["apiVersion"] != "keda.sh/v1alpha1" for n, d in documents if n == path.name)]
result = subprocess.run(
    [sys.executable, "-m", "kubernetes_validate", "--strict", *map(str, builtin)], capture_output=True, text=True
)
print(result.stdout, end="")
if result.returncode != 0 or "WARN" in result.stdout or "ERROR" in result.stdout:
    problem(f"schema validation failed:\n{result.stdout}{result.stderr}")

by_kind = {}
for name, document in documents:
    by_kind.setdefault(document["kind"], []).append(document)


def one(kind, name):
    found = [d for d in by_kind.get(kind, []) if d["metadata"]["name"] == name]
    if len(found) != 1:
        problem(f"expected one {kind} named {name}, found {len(found)}")
        return None
    return found[0]


def flag(args, name):
    for arg in args:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}
service = one("Service", "groksweep-coordinator")
ports = {p["name"]: p["port"] for p in service["spec"]["ports"]} if service else {}
coordinator_address = f"groksweep-coordinator:{ports.get('grpc')}"

workloads = by_kind.get("StatefulSet", []) + by_kind.get("Deployment", []) + by_kind.get("Job", [])
for workload in workloads:
    kind, name = workload["kind"], workload["metadata"]["name"]
    template = workload["spec"]["template"]
    labels = template["metadata"].get("labels", {})
    selector = workload["spec"].get("selector", {}).get("matchLabels", {})
    if any(labels.get(k) != v for k, v in selector.items()):
        problem(f"{kind} {name}: selector {selector} does not match the pod labels {labels}")
    for container in template["spec"]["containers"]:
        args = container["args"]
        help_run = subprocess.run([binary, *args, "--help"], capture_output=True, text=True)
        if help_run.returncode != 0:
            problem(f"{kind} {name}: groksweep refuses the arguments {args}: {help_run.stderr.strip()}")
        container_ports = {p["containerPort"] for p in container.get("ports", [])}
        listening = {int(flag(args, f).rsplit(":", 1)[1]) for f in ("listen", "health-listen", "metrics-listen") if flag(args, f)}
        for probe_name in ("livenessProbe", "readinessProbe"):
            probe = container.get(probe_name)
            if probe is None:
                continue
            port = probe.get("grpc", {}).get("port")
            if port is None:
                problem(f"{kind} {name}: {probe_name} is not a gRPC probe")
            elif port not in container_ports or port not in listening:
                problem(f"{kind} {name}: {probe_name} asks port {port}, which the container does not listen on {sorted(listening)}")
        if args[0] == "worker":
            if flag(args, "coordinator") != f"http://{coordinator_address}":
                problem(f"{kind} {name}: --coordinator={flag(args, 'coordinator')} is not the Service http://{coordinator_address}")
            if "nvidia.com/gpu" not in container.get("resources", {}).get("limits", {}):
                problem(f"{kind} {name}: a worker without a GPU request")
        for probe_name in ("livenessProbe", "readinessProbe"):
            if "grpc" not in (container.get(probe_name) or {}):
                problem(f"{kind} {name}: no gRPC {probe_name}")
        if args[0] == "coordinator":
            if int(flag(args, "listen").rsplit(":", 1)[1]) != ports.get("grpc"):
                problem(f"{kind} {name}: the coordinator listens on {flag(args, 'listen')}, the Service sends to {ports.get('grpc')}")
            if service and any(labels.get(k) != v for k, v in service["spec"]["selector"].items()):
                problem(f"{kind} {name}: the Service's selector does not pick its pods")
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference and reference["key"] not in secrets.get(reference["name"], {}).get("stringData", {}):
                problem(f"{kind} {name}: env {variable['name']} reads a missing secret {reference['name']}/{reference['key']}")
    if kind == "StatefulSet" and workload["spec"].get("serviceName") != "groksweep-coordinator":
        problem(f"StatefulSet {name}: serviceName is not the coordinator's Service")
    if kind == "Job":
        spec = workload["spec"]
        if spec.get("completionMode") != "Indexed" or "backoffLimitPerIndex" not in spec:
            problem(f"Job {name}: expected an Indexed Job with backoffLimitPerIndex")
        if template["spec"].get("restartPolicy") != "Never":
            problem(f"Job {name}: backoffLimitPerIndex needs restartPolicy Never")
        if flag(template["spec"]["containers"][0]["args"], "exit-when-idle") is None:
            problem(f"Job {name}: its workers never exit, so the Job would never complete")

# The ScaledObject (KEDA's CRD): its fields, its target and the scaler's metadata.
SCALED_OBJECT_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
                      "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}
METADATA = {"scalerAddress", "trialsPerReplica", "sweep"}
for scaled in by_kind.get("ScaledObject", []):
    name, spec = scaled["metadata"]["name"], scaled["spec"]
    if set(spec) - SCALED_OBJECT_SPEC:
        problem(f"ScaledObject {name}: unknown fields {sorted(set(spec) - SCALED_OBJECT_SPEC)}")
    target = spec["scaleTargetRef"]
    if one(target.get("kind", "Deployment"), target["name"]) is None:
        problem(f"ScaledObject {name}: its target {target} is not in {directory}")
    for trigger in spec["triggers"]:
        metadata = trigger.get("metadata", {})
        if trigger["type"] != "external" or metadata.get("scalerAddress") != coordinator_address:
            problem(f"ScaledObject {name}: the trigger must be `external` at {coordinator_address}, got {trigger}")
        if set(metadata) - METADATA:
            problem(f"ScaledObject {name}: metadata the scaler does not read: {sorted(set(metadata) - METADATA)}")
        if not all(isinstance(value, str) for value in metadata.values()):
            problem(f"ScaledObject {name}: KEDA metadata values must be strings")
        if float(metadata.get("trialsPerReplica", "1")) <= 0:
            problem(f"ScaledObject {name}: trialsPerReplica must be positive")
if not by_kind.get("ScaledObject"):
    problem("no ScaledObject")

for text in problems:
    print(f"PROBLEM: {text}")
print(f"{len(documents)} resources in {len(files)} files: {'ok' if not problems else f'{len(problems)} problems'}")
sys.exit(1 if problems else 0)
