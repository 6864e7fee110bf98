#!/usr/bin/python3
"""manifests_test.py WARMPOOLD SOURCE_DIR

The Kubernetes manifests in packaging/kubernetes/, checked against the API
schema they use: every object is walked field by field against the typed
models of Debian's python3-kubernetes (the OpenAPI schema of Kubernetes 1.22
that the client was generated from), so an unknown or misspelt field, a
wrong type or a missing required field fails; then deserialised with the
client's own validation. Then what warmpool needs of them: privileged,
hostPID, the host paths, the ConfigMap mounted where --config points, and
the ConfigMap's warmpool.toml accepted by `warmpoold --check-config`.
"""

import os
import subprocess
import sys
import tempfile

import yaml
from kubernetes import client

FAILURES = []
QUIET = False  # the self-check's expected failures are not printed


def fail(msg):
    FAILURES.append(msg)
    if not QUIET:
        print("FAIL " + msg)


PRIMITIVES = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    # IntOrString and friends: the generated client types them as object.
    "object": (str, int, float, bool, dict, list),
    "datetime": (str,),
    "date": (str,),
}


def check_schema(value, type_name, path):
    """Walks `value` against the model `type_name`; reports every mismatch."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return fail(f"{path}: expected a list ({type_name}), got {type(value).__name__}")
        for i, item in enumerate(value):
            check_schema(item, type_name[5:-1], f"{path}[{i}]")
        return None
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return fail(f"{path}: expected a map ({type_name}), got {type(value).__name__}")
        inner = type_name[type_name.index(",") + 1:-1].strip()
        for key, item in value.items():
            check_schema(item, inner, f"{path}.{key}")
        return None
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name])
        if type_name in ("int", "float") and isinstance(value, bool):
            ok = False
        if not ok:
            fail(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
        return None
    model = getattr(client.models, type_name)
    if not isinstance(value, dict):
        return fail(f"{path}: expected an object ({type_name}), got {type(value).__name__}")
    by_json_name = {json: attr for attr, json in model.attribute_map.items()}
    for key, item in value.items():
        if key not in by_json_name:
            fail(f"{path}.{key}: unknown field of {type_name}")
            continue
        check_schema(item, model.openapi_types[by_json_name[key]], f"{path}.{key}")
    return None


KINDS = {("apps/v1", "DaemonSet"): "V1DaemonSet", ("v1", "ConfigMap"): "V1ConfigMap"}


def load(source_dir):
    objects = {}
    directory = os.path.join(source_dir, "packaging", "kubernetes")
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(directory, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                kind = (doc.get("apiVersion"), doc.get("kind"))
                if kind not in KINDS:
                    fail(f"{name}: {kind} is not a kind this test knows")
                    continue
                where = f"{name}:{doc['kind']}/{doc['metadata']['name']}"
                check_schema(doc, KINDS[kind], where)
                # The client's own validation (required fields, enums).
                try:
                    client.ApiClient()._ApiClient__deserialize(doc, KINDS[kind])
                except (ValueError, TypeError) as e:
                    fail(f"{where}: rejected by the client's validation: {e}")
                objects[doc["kind"]] = doc
                print(f"ok   {where}: every field known to {KINDS[kind]}, types right")
    return objects


def check_daemonset(ds, cm):
    spec = ds["spec"]
    pod = spec["template"]["spec"]
    if spec["selector"]["matchLabels"].items() - spec["template"]["metadata"]["labels"].items():
        fail("DaemonSet: selector does not match the pod template's labels")
    if not pod.get("hostPID"):
        fail("DaemonSet: hostPID is not true")
    (container,) = [c for c in pod["containers"] if c["name"] == "warmpoold"]
    if not container.get("securityContext", {}).get("privileged"):
        fail("DaemonSet: warmpoold is not privileged")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for m in container["volumeMounts"]:
        if m["name"] not in volumes:
            fail(f"DaemonSet: mount {m['mountPath']} names no volume ({m['name']})")
    host_paths = {}
    for path, m in mounts.items():
        v = volumes.get(m["name"], {})
        if "hostPath" in v:
            host_paths[v["hostPath"]["path"]] = path
    needed = ["/run/containerd", "/run/warmpool", "/var/lib/warmpool", "/sys/fs/cgroup",
              "/var/log/pods", "/etc/cni", "/opt/cni/bin"]
    for host in needed:
        if host_paths.get(host) != host:
            fail(f"DaemonSet: host path {host} is not mounted at the same path "
                 f"(mounted: {host_paths})")
    # --config names the ConfigMap's file where it is mounted.
    args = container.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    config_dir = os.path.dirname(config_path or "")
    mount = mounts.get(config_dir)
    volume = volumes.get(mount["name"], {}) if mount else {}
    if volume.get("configMap", {}).get("name") != cm["metadata"]["name"]:
        fail(f"DaemonSet: --config {config_path} is not in the mounted ConfigMap")
    elif os.path.basename(config_path) not in cm["data"]:
        fail(f"DaemonSet: ConfigMap has no {os.path.basename(config_path)}")
    print("ok   DaemonSet: privileged, hostPID, host paths "
          f"{', '.join(needed)}, config from ConfigMap at {config_path}")
    return os.path.basename(config_path or "")


def check_config(warmpoold, cm, key, ds):
    text = cm["data"][key]
    with tempfile.TemporaryDirectory(prefix="wpk8s.") as tmp:
        path = os.path.join(tmp, key)
        with open(path, "w") as f:
            f.write(text)
        run = subprocess.run([warmpoold, "--check-config", path], capture_output=True, text=True)
        if run.returncode != 0:
            fail(f"ConfigMap {key}: warmpoold --check-config says:\n{run.stderr}")
            return
        print(f"ok   ConfigMap {key}: {run.stdout.strip()}")
    # The sockets and state live on host paths the DaemonSet mounts, so the
    # host (kubelet) sees warmpool's socket where the kubelet flag points.
    pod = ds["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "warmpoold"]
    mounted = [m["mountPath"] for m in container["volumeMounts"]]
    for setting in ("listen", "upstream", "state_dir", "admin"):
        line = [l for l in text.splitlines() if l.startswith(setting + " ")]
        if not line:
            fail(f"ConfigMap {key}: daemon.{setting} not set explicitly")
            continue
        value = line[0].split("=", 1)[1].strip().strip('"')
        if not any(value == m or value.startswith(m + "/") for m in mounted):
            fail(f"ConfigMap {key}: daemon.{setting} = {value} is not on a mounted host path")
    if 'listen = "/run/warmpool/warmpool.sock"' not in text:
        fail("ConfigMap: daemon.listen is not the endpoint the README tells kubelet to use")


def main():
    warmpoold, source_dir = sys.argv[1], sys.argv[2]
    objects = load(source_dir)
    ds, cm = objects.get("DaemonSet"), objects.get("ConfigMap")
    if not ds or not cm:
        fail("expected a DaemonSet and a ConfigMap in packaging/kubernetes/")
    else:
        # The walker itself must catch what it is for: a misspelt field.
        import copy
        typo = copy.deepcopy(ds)
        typo["spec"]["template"]["spec"]["hostPid"] = True
        global QUIET
        before = len(FAILURES)
        QUIET = True
        check_schema(typo, "V1DaemonSet", "self-check")
        QUIET = False
        caught = [f for f in FAILURES[before:] if "hostPid: unknown field" in f]
        del FAILURES[before:]
        if not caught:
            fail("the schema walk did not catch a misspelt field (hostPid)")
        key = check_daemonset(ds, cm)
        if key in cm.get("data", {}):
            check_config(warmpoold, cm, key, ds)
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
