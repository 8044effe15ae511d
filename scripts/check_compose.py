"""Validates docker-compose.yml without Docker (run by scripts/check-compose).

1. The Compose Specification: the file is parsed by the PyPI package `compose-spec` (bindings
   of the `compose_spec` Rust crate, models generated from the official JSON schema) after
   resolving YAML merge keys; unknown keys, wrong types and unknown enum values fail.
2. The project's rules for the file (issue 7): every published port on 127.0.0.1 only, no
   trust-auth PostgreSQL, Redpanda data in a named volume, the services connect as
   taskflow_service and only the API migrates, no failure hidden by `|| true`; and every
   service run from the Taskflow image starts a binary the Dockerfile copies into it.
3. deploy/compose/topics.sh run against a stub `rpk`: every topic gets an explicit retention,
   "already exists" is accepted (and the retention set again), any other failure stops it.

Exit status 0 when everything holds; otherwise each failure is printed and the status is 1.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

import compose_spec

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
TOPICS_SH = ROOT / "deploy" / "compose" / "topics.sh"

FOREVER = "-1"
THIRTY_DAYS = str(30 * 24 * 3600 * 1000)
EXPECTED_RETENTION = {
    "taskflow.task-events": FOREVER,
    "taskflow.reminders": THIRTY_DAYS,
    "taskflow.dlq.taskflow-audit": FOREVER,
    "taskflow.dlq.taskflow-recurrence": FOREVER,
    "taskflow.dlq.taskflow-reminders": FOREVER,
    "taskflow.dlq.taskflow-notifier": FOREVER,
}

# The compose services of the worker binaries: they connect as taskflow_service and never migrate.
WORKERS = ("audit", "recurrence", "reminders", "notifier")
TASKFLOW_IMAGE = "taskflow:local"
DOCKERFILE = ROOT / "Dockerfile"

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def parse(text):
    """The Compose Specification check; raises on an invalid file."""
    project = compose_spec.PyOptions(apply_merge=True).from_yaml(text)
    project.validate()
    return project.to_dict()


def host_ip(port):
    """The host address of a published port, short ("ip:host:container") or long syntax."""
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).split(":")
    return parts[0] if len(parts) == 3 else None


def dockerfile_binaries():
    """The binaries the Dockerfile copies into the image (its `for b in ...; do cp` loop)."""
    m = re.search(r"for b in ([^;]+); do cp", DOCKERFILE.read_text())
    return set(m.group(1).split()) if m else set()


def project_rules(spec):
    services = spec.get("services") or {}
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            check(host_ip(port) == "127.0.0.1", f"{name}: port {port!r} is not bound to 127.0.0.1")
    pg = services.get("postgres", {})
    env = pg.get("environment") or {}
    check(env.get("POSTGRES_HOST_AUTH_METHOD", "") != "trust", "postgres: trust authentication")
    check("POSTGRES_PASSWORD_FILE" in env, "postgres: no generated password (POSTGRES_PASSWORD_FILE)")
    volumes = set((spec.get("volumes") or {}).keys())
    rp_volumes = [str(v) for v in services.get("redpanda", {}).get("volumes") or []]
    check(
        any(v.split(":")[0] in volumes and ":/var/lib/redpanda/data" in v for v in rp_volumes),
        "redpanda: data is not in a named volume",
    )
    for name in ("api", *WORKERS):
        env = services.get(name, {}).get("environment") or {}
        url = env.get("TASKFLOW_DATABASE_URL", "")
        check(url.startswith("postgres://taskflow_service@"), f"{name}: connects as {url!r}, not taskflow_service")
    for name in WORKERS:
        check(
            (services.get(name, {}).get("environment") or {}).get("TASKFLOW_DATABASE_MIGRATE") == "false",
            f"{name}: must not migrate (it has no owner credentials)",
        )
    # Every service run from the Taskflow image starts a binary the Dockerfile copies into it.
    shipped = dockerfile_binaries()
    check(shipped, "Dockerfile: no `for b in ...; do cp` list of binaries found")
    for name, svc in services.items():
        if svc.get("image") != TASKFLOW_IMAGE:
            continue
        command = svc.get("command") or []
        binary = command[0] if isinstance(command, list) and command else str(command).split(" ")[0]
        check(binary in shipped, f"{name}: runs {binary!r}, which the Dockerfile does not copy into the image")
    for path in [COMPOSE, *sorted((ROOT / "deploy" / "compose").glob("*.sh"))]:
        check("|| true" not in path.read_text(), f"{path.relative_to(ROOT)}: `|| true` hides failures")


STUB_RPK = """#!/bin/bash
# Stub rpk: logs its arguments; STUB_MODE says how `topic create` answers.
printf '%s\\n' "$*" >> "$STUB_LOG"
if [ "$1 $2" = "topic create" ]; then
  case "$STUB_MODE" in
    ok) printf 'TOPIC  STATUS\\n%s  OK\\n' "$3"; exit 0 ;;
    exists) printf 'TOPIC  STATUS\\n%s  TOPIC_ALREADY_EXISTS: The topic has already been created.\\n' "$3"; exit 1 ;;
    fail) printf 'TOPIC  STATUS\\n%s  POLICY_VIOLATION: Request parameters do not satisfy the configured policy.\\n' "$3"; exit 1 ;;
  esac
fi
exit 0
"""


def run_topics(mode):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        rpk = tmp / "rpk"
        rpk.write_text(STUB_RPK)
        rpk.chmod(0o755)
        log = tmp / "calls"
        log.touch()
        env = dict(os.environ, PATH=f"{tmp}:{os.environ['PATH']}", STUB_LOG=str(log), STUB_MODE=mode)
        proc = subprocess.run(["bash", str(TOPICS_SH)], env=env, capture_output=True, text=True, timeout=60)
        calls = [shlex.split(line) for line in log.read_text().splitlines()]
        return proc.returncode, calls


def option(args, key):
    """Values of `-c key=v` / `--set key=v` in an rpk argument list."""
    return [a.split("=", 1)[1] for a in args if a.startswith(key + "=")]


def topics_script():
    rc, calls = run_topics("ok")
    check(rc == 0, f"topics.sh: exit {rc} when every creation succeeds")
    created = {c[2]: c for c in calls if c[:2] == ["topic", "create"]}
    check(set(created) == set(EXPECTED_RETENTION), f"topics.sh: creates {sorted(created)}")
    for topic, retention in EXPECTED_RETENTION.items():
        args = created.get(topic, [])
        check(option(args, "retention.ms") == [retention], f"topics.sh: {topic} retention.ms {option(args, 'retention.ms')}, expected {retention}")
        check(option(args, "cleanup.policy") == ["delete"], f"topics.sh: {topic} cleanup.policy")

    rc, calls = run_topics("exists")
    check(rc == 0, f"topics.sh: exit {rc} when the topics already exist")
    altered = {c[2]: c for c in calls if c[:2] == ["topic", "alter-config"] and len(c) > 2}
    for topic, retention in EXPECTED_RETENTION.items():
        check(option(altered.get(topic, []), "retention.ms") == [retention], f"topics.sh: existing {topic} does not get its retention set")

    rc, calls = run_topics("fail")
    check(rc != 0, "topics.sh: a failed creation does not stop it")
    check(len([c for c in calls if c[:2] == ["topic", "create"]]) == 1, "topics.sh: goes on after a failed creation")


def validator_rejects_broken_files(text):
    """The schema check is not vacuous: known-bad variants fail."""
    broken = {
        "an unknown service key": text.replace("    restart: \"no\"", "    restrat: \"no\"", 1),
        "an unknown depends_on condition": text.replace("service_healthy", "service_happy", 1),
        "a wrong type": text.replace("retries: 30", "retries: thirty", 1),
    }
    for what, variant in broken.items():
        check(variant != text, f"self-test: could not build a file with {what}")
        try:
            parse(variant)
            failures.append(f"self-test: a file with {what} passed validation")
        except Exception:
            pass
    spec = parse(text.replace("127.0.0.1:5432:5432", "5432:5432"))
    before = len(failures)
    project_rules(spec)
    rule_caught = len(failures) > before
    del failures[before:]
    check(rule_caught, "self-test: PostgreSQL published on every interface passed the rules")


def main():
    text = COMPOSE.read_text()
    try:
        spec = parse(text)
    except Exception as e:  # the binding raises ValueError-like errors with the location
        print(f"docker-compose.yml does not follow the Compose Specification: {e}", file=sys.stderr)
        return 1
    project_rules(spec)
    topics_script()
    validator_rejects_broken_files(text)
    for f in failures:
        print(f"check-compose: {f}", file=sys.stderr)
    if failures:
        return 1
    print(f"docker-compose.yml: valid Compose Specification, {len(spec.get('services') or {})} services; project rules and topics.sh hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
