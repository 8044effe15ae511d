"""Validates docker-compose.yml without Docker (run by scripts/check-compose).

1. The Compose Specification: the file is parsed by the PyPI package `compose-spec` (bindings
   of the `compose_spec` Rust crate, models generated from the official JSON schema) after
   resolving YAML merge keys; unknown keys, wrong types and unknown enum values fail.
2. The project's rules for the file (issue 7): every published port on 127.0.0.1 only, no
   trust-auth PostgreSQL, Redpanda data in a named volume, the services connect as
   taskflow_service and only the API migrates, no failure hidden by `|| true`; and every
   service run from the Taskflow image starts a binary the Dockerfile copies into it.
3. The one-shot `topics` and `schemas` services run `taskflow-admin topics create` and
   `taskflow-admin schemas register` from the Taskflow image, and the API starts only after
   both completed successfully. (What `topics create` creates, with which retention, is
   tested in Rust: `workers/src/admin/topics.rs` and `tests/tests/admin.rs`.)

Exit status 0 when everything holds; otherwise each failure is printed and the status is 1.
"""

import pathlib
import re
import sys

import compose_spec

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
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


ONE_SHOTS = {
    "topics": ["taskflow-admin", "topics", "create"],
    "schemas": ["taskflow-admin", "schemas", "register"],
}


def one_shots(spec):
    """Topics and schemas are set up by taskflow-admin before the API starts."""
    services = spec.get("services") or {}
    for name, command in ONE_SHOTS.items():
        svc = services.get(name, {})
        check(svc.get("image") == TASKFLOW_IMAGE, f"{name}: not run from {TASKFLOW_IMAGE}")
        check(svc.get("command") == command, f"{name}: runs {svc.get('command')!r}, expected {command!r}")
        check(str(svc.get("restart")) == "no", f"{name}: a one-shot service must not restart")
    api_deps = services.get("api", {}).get("depends_on") or {}
    for name in ONE_SHOTS:
        condition = (api_deps.get(name) or {}).get("condition") if isinstance(api_deps, dict) else None
        check(condition == "service_completed_successfully", f"api: does not wait for {name} to complete successfully")
    topic_deps = services.get("topics", {}).get("depends_on") or {}
    check(
        isinstance(topic_deps, dict) and (topic_deps.get("redpanda") or {}).get("condition") == "service_healthy",
        "topics: does not wait for a healthy redpanda",
    )


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
    one_shots(spec)
    validator_rejects_broken_files(text)
    for f in failures:
        print(f"check-compose: {f}", file=sys.stderr)
    if failures:
        return 1
    print(f"docker-compose.yml: valid Compose Specification, {len(spec.get('services') or {})} services; project rules and one-shot services hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
