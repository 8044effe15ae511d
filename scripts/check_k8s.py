"""Validates deploy/k8s without a cluster (run by scripts/check-k8s).

1. kustomization.yaml lists every manifest in deploy/k8s, and nothing that is not there.
2. Every Kubernetes object in those manifests against the Kubernetes JSON schemas bundled in
   the PyPI package `kubernetes-validate` (no network at validation time), in strict mode:
   an unknown field fails, as it does in `kubectl apply` (server-side field validation).
   A kind without a schema fails too (the package itself only warns).
3. KEDA's objects (ScaledObject, TriggerAuthentication), which Kubernetes' schemas do not
   cover, against KEDA's CRD OpenAPI schemas vendored in deploy/k8s/schemas/ (checked
   against the sha256 sums in its README), with `jsonschema`, also strict.
4. The project's rules for the autoscaling: each worker StatefulSet has a ScaledObject that
   targets it by kind StatefulSet, with the worker's consumer group and exactly its topics,
   minReplicaCount 1 and maxReplicaCount the topics' partition count; the StatefulSet sets no
   replicas; the TriggerAuthentication reads only the workers' Secret and ConfigMap keys.
5. A self-test: known-broken documents must fail each of the checks above, so a validator
   that accepts everything is noticed.

Exit status 0 when everything holds; otherwise each failure is printed and the status is 1.
"""

import copy
import hashlib
import pathlib
import re
import sys

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils

ROOT = pathlib.Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"

# Validated against the oldest Kubernetes minor we claim to support and the newest the
# package bundles, so neither a removed nor a not-yet-existing field slips through.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())

KEDA_CRDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
}

# Partitions of taskflow.task-events and taskflow.reminders as deploy/compose/topics.sh
# creates them; a worker replica beyond it gets no partition.
PARTITIONS = 6
SECRET = "taskflow-secrets"
CONFIGMAP = "taskflow-config"
# The worker StatefulSets that KEDA scales, by name.
WORKERS = ("taskflow-audit", "taskflow-recurrence", "taskflow-reminders", "taskflow-notifier")

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def load_docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# --- 1. the kustomization -----------------------------------------------------------------
def kustomization_resources():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = list(kustomization.get("resources") or [])
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    check(len(listed) == len(set(listed)), f"kustomization.yaml lists a file twice: {listed}")
    for name in sorted(set(on_disk) - set(listed)):
        failures.append(f"kustomization.yaml does not list deploy/k8s/{name}")
    for name in sorted(set(listed) - set(on_disk)):
        failures.append(f"kustomization.yaml lists {name}, which is not in deploy/k8s")
    return [K8S / name for name in listed if name in on_disk]


# --- 3. KEDA's schemas ----------------------------------------------------------------------
def strict(schema):
    """An OpenAPI structural schema with unknown fields refused, as the API server's strict
    field validation does (CRD schemas leave additionalProperties open and rely on pruning)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def vendored_sums():
    """file -> sha256 from the table in deploy/k8s/schemas/README.md."""
    readme = (SCHEMAS / "README.md").read_text()
    return dict(re.findall(r"`(keda\.sh_[a-z]+\.yaml)`.*?sha256 `([0-9a-f]{64})`", readme))


def keda_validators():
    sums = vendored_sums()
    validators = {}
    for (api_version, kind), filename in KEDA_CRDS.items():
        path = SCHEMAS / filename
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        check(sums.get(filename) == digest, f"deploy/k8s/schemas/{filename}: sha256 {digest} is not the one in schemas/README.md")
        crd = yaml.safe_load(path.read_text())
        group, version = api_version.split("/")
        check(crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind, f"{filename} is not the CRD of {kind}")
        served = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
        check(served, f"{filename}: {api_version} is not a served version")
        if served:
            schema = strict(served[0]["schema"]["openAPIV3Schema"])
            jsonschema.Draft7Validator.check_schema(schema)
            validators[(api_version, kind)] = jsonschema.Draft7Validator(schema)
    return validators


# --- 2 and 3. every object ------------------------------------------------------------------
def validate_object(doc, where, validators):
    """The errors of one object, as strings (empty when it is valid)."""
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return [f"{where}: not a Kubernetes object (apiVersion and kind required)"]
    name = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name')}"
    key = (doc["apiVersion"], doc["kind"])
    if key in validators:
        errors = []
        meta = doc.get("metadata")
        if not (isinstance(meta, dict) and isinstance(meta.get("name"), str)):
            errors.append(f"{where} {name}: metadata.name missing")
        for e in sorted(validators[key].iter_errors(doc), key=lambda e: list(e.path)):
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{where} {name}: {path}: {e.message}")
        return errors
    errors = []
    for version in K8S_VERSIONS:
        try:
            kv_utils.validate(doc, version, strict=True)
        except kv_utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{where} {name} (Kubernetes {e.version}): {path}: {e.message}")
        except (kv_utils.SchemaNotFoundError, kv_utils.InvalidSchemaError) as e:
            errors.append(f"{where} {name}: {e.message}")
    return errors


# --- 4. the autoscaling rules ---------------------------------------------------------------
def env_of(statefulset):
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for c in containers for e in c.get("env") or []}


def worker_topics(statefulset, config):
    """The topics a worker consumes, as its binary reads them: TASKFLOW_KAFKA_TOPICS, or (the
    notifier, which leaves it unset) the task-events topic from the ConfigMap and its
    TASKFLOW_TOPIC_REMINDERS."""
    env = env_of(statefulset)
    if env.get("TASKFLOW_KAFKA_TOPICS"):
        return set(env["TASKFLOW_KAFKA_TOPICS"].split(","))
    return {config.get("TASKFLOW_TOPIC_TASK_EVENTS"), env.get("TASKFLOW_TOPIC_REMINDERS")}


def autoscaling_rules(objects):
    """The errors of the KEDA setup against the worker manifests, as strings."""
    errors = []
    by_kind = {}
    for doc in objects:
        by_kind.setdefault(doc.get("kind"), {})[(doc.get("metadata") or {}).get("name")] = doc
    config = (by_kind.get("ConfigMap", {}).get(CONFIGMAP) or {}).get("data") or {}
    statefulsets = by_kind.get("StatefulSet", {})
    scaled = by_kind.get("ScaledObject", {})
    auths = by_kind.get("TriggerAuthentication", {})
    for worker in WORKERS:
        sts = statefulsets.get(worker)
        if sts is None:
            errors.append(f"StatefulSet {worker} is missing")
            continue
        if "replicas" in sts["spec"]:
            errors.append(f"StatefulSet {worker} sets replicas, which would fight its ScaledObject")
        targeting = [
            so for so in scaled.values()
            if so["spec"]["scaleTargetRef"].get("name") == worker
        ]
        if len(targeting) != 1:
            errors.append(f"StatefulSet {worker}: {len(targeting)} ScaledObjects target it, expected 1")
            continue
        so = targeting[0]
        spec = so["spec"]
        ref = spec["scaleTargetRef"]
        so_name = so["metadata"]["name"]
        if ref.get("kind") != "StatefulSet" or ref.get("apiVersion") != "apps/v1":
            errors.append(f"ScaledObject {so_name}: scaleTargetRef must be apps/v1 StatefulSet, is {ref}")
        if spec.get("minReplicaCount") != 1:
            errors.append(f"ScaledObject {so_name}: minReplicaCount {spec.get('minReplicaCount')}, expected 1")
        if spec.get("maxReplicaCount") != PARTITIONS:
            errors.append(f"ScaledObject {so_name}: maxReplicaCount {spec.get('maxReplicaCount')}, expected {PARTITIONS} (the partitions)")
        group = env_of(sts).get("TASKFLOW_KAFKA_GROUP_ID")
        topics = set()
        for trigger in spec.get("triggers") or []:
            meta = trigger.get("metadata") or {}
            if trigger.get("type") != "kafka":
                errors.append(f"ScaledObject {so_name}: a trigger of type {trigger.get('type')!r}, expected kafka")
                continue
            if meta.get("consumerGroup") != group:
                errors.append(f"ScaledObject {so_name}: consumerGroup {meta.get('consumerGroup')!r}, the worker's group is {group!r}")
            if not (meta.get("bootstrapServers") or meta.get("bootstrapServersFromEnv") == "TASKFLOW_KAFKA_BROKERS"):
                errors.append(f"ScaledObject {so_name}: no bootstrapServers")
            try:
                if int(meta.get("lagThreshold", "")) <= 0:
                    raise ValueError
            except ValueError:
                errors.append(f"ScaledObject {so_name}: lagThreshold {meta.get('lagThreshold')!r} is not a positive integer")
            auth = (trigger.get("authenticationRef") or {}).get("name")
            if auth not in auths:
                errors.append(f"ScaledObject {so_name}: authenticationRef {auth!r} is not a TriggerAuthentication here")
            topics.add(meta.get("topic"))
        expected = worker_topics(sts, config)
        if topics != expected:
            errors.append(f"ScaledObject {so_name}: triggers on topics {sorted(map(str, topics))}, the worker consumes {sorted(map(str, expected))}")
    for name, so in scaled.items():
        if so["spec"]["scaleTargetRef"].get("name") not in WORKERS:
            errors.append(f"ScaledObject {name} targets {so['spec']['scaleTargetRef'].get('name')!r}, not a worker")
    for name, auth in auths.items():
        spec = auth["spec"]
        for ref in spec.get("secretTargetRef") or []:
            if ref.get("name") != SECRET:
                errors.append(f"TriggerAuthentication {name}: reads Secret {ref.get('name')!r}, not the workers' {SECRET}")
        for ref in spec.get("configMapTargetRef") or []:
            if ref.get("name") == CONFIGMAP and ref.get("key") not in config:
                errors.append(f"TriggerAuthentication {name}: ConfigMap key {ref.get('key')!r} is not in {CONFIGMAP}")
        params = {r.get("parameter") for r in (spec.get("secretTargetRef") or []) + (spec.get("configMapTargetRef") or [])}
        for needed in ("username", "password", "sasl", "tls"):
            if needed not in params:
                errors.append(f"TriggerAuthentication {name}: no {needed!r} parameter")
    return errors


# --- 5. the self-test -------------------------------------------------------------------------
def validator_rejects_broken_documents(objects, validators):
    def find(kind, name):
        return next(copy.deepcopy(o) for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)

    broken = {}
    d = find("Deployment", "taskflow-api")
    d["spec"]["replica"] = d["spec"].pop("replicas")
    broken["a Deployment with a misspelt field (replica)"] = d
    s = find("StatefulSet", "taskflow-audit")
    s["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "nine-thousand"
    broken["a StatefulSet with a wrongly typed containerPort"] = s
    s = find("StatefulSet", "taskflow-audit")
    del s["spec"]["selector"]
    broken["a StatefulSet without its required selector"] = s
    s = find("StatefulSet", "taskflow-audit")
    s["kind"] = "StatefulSett"
    broken["an unknown kind"] = s
    so = find("ScaledObject", "taskflow-audit")
    so["spec"]["maxReplicaCount"] = "six"
    broken["a ScaledObject with a wrongly typed maxReplicaCount"] = so
    so = find("ScaledObject", "taskflow-audit")
    so["spec"]["scaleTargetRefs"] = so["spec"].pop("scaleTargetRef")
    broken["a ScaledObject with a misspelt scaleTargetRef"] = so
    so = find("ScaledObject", "taskflow-audit")
    del so["spec"]["triggers"][0]["type"]
    broken["a ScaledObject trigger without its type"] = so
    ta = find("TriggerAuthentication", "taskflow-kafka")
    ta["spec"]["secretTargetRef"][0]["secret"] = ta["spec"]["secretTargetRef"][0].pop("name")
    broken["a TriggerAuthentication secretTargetRef without its name"] = ta
    for what, doc in broken.items():
        check(validate_object(doc, "self-test", validators), f"self-test: {what} passed validation")

    def rules_catch(mutate):
        variant = copy.deepcopy(objects)
        mutate(variant)
        return bool(autoscaling_rules(variant))

    def so_of(variant, name):
        return next(o for o in variant if o["kind"] == "ScaledObject" and o["metadata"]["name"] == name)

    def wrong_group(v):
        so_of(v, "taskflow-recurrence")["spec"]["triggers"][0]["metadata"]["consumerGroup"] = "taskflow-audit"

    def missing_topic(v):
        so_of(v, "taskflow-notifier")["spec"]["triggers"].pop()

    def deployment_target(v):
        so_of(v, "taskflow-reminders")["spec"]["scaleTargetRef"]["kind"] = "Deployment"

    def too_many(v):
        so_of(v, "taskflow-audit")["spec"]["maxReplicaCount"] = PARTITIONS + 1

    for what, mutate in {
        "a ScaledObject with another worker's consumer group": wrong_group,
        "a ScaledObject missing one of the worker's topics": missing_topic,
        "a ScaledObject targeting a Deployment": deployment_target,
        "a ScaledObject scaling past the partition count": too_many,
    }.items():
        check(rules_catch(mutate), f"self-test: {what} passed the autoscaling rules")


def main():
    files = kustomization_resources()
    validators = keda_validators()
    objects = []
    count = 0
    for path in files:
        try:
            docs = load_docs(path)
        except yaml.YAMLError as e:
            failures.append(f"{path.relative_to(ROOT)}: not YAML: {e}")
            continue
        check(docs, f"{path.relative_to(ROOT)}: no object")
        for doc in docs:
            count += 1
            failures.extend(validate_object(doc, str(path.relative_to(ROOT)), validators))
            if isinstance(doc, dict):
                objects.append(doc)
    failures.extend(autoscaling_rules(objects))
    if not failures:
        validator_rejects_broken_documents(objects, validators)
    for f in failures:
        print(f"check-k8s: {f}", file=sys.stderr)
    if failures:
        return 1
    print(
        f"deploy/k8s: {count} objects in {len(files)} files valid against Kubernetes "
        f"{' and '.join(K8S_VERSIONS)} (strict) and KEDA's CRDs; autoscaling rules hold; self-test passed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
