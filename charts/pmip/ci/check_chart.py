#!/usr/bin/env python3
"""Render and lint charts/pmip with the real Helm engine (helm-python-sdk) and validate every
rendered manifest and the CRDs with kubernetes-validate, for each Kubernetes version in
KUBE_VERSIONS. MobilityDomain objects the chart renders are validated against the chart's own
CRD schema. Exits 0 when everything passes, 1 on a failed check, 2 when a tool is missing.

Run from anywhere: python3 charts/pmip/ci/check_chart.py
"""

import json
import os
import pathlib
import sys

KUBE_VERSIONS = ["1.33.0", "1.37.0"]
CHART = pathlib.Path(__file__).resolve().parent.parent
REQUIREMENTS = CHART / "ci-requirements.txt"

try:
    import helm_python as helm
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:  # pragma: no cover - the message is the point
    print(
        f"missing Python tool ({e.name}): install with\n"
        f"  python3 -m pip install -r {REQUIREMENTS.relative_to(CHART.parent.parent)}",
        file=sys.stderr,
    )
    sys.exit(2)

# Value sets the chart must render and lint cleanly with; each is also validated.
VALUE_SETS = {
    "defaults": {},
    "default-domain": {
        "defaultDomain": {
            "enabled": True,
            "name": "lab",
            "spec": {
                "lma": {
                    "prefixPools": [{"prefix": "2001:db8:100::/48", "prefixLength": 64}],
                    "fastHandover": {"mode": "Predictive", "accessPoints": {"ap1": "kind-worker"}},
                },
                "mags": {"lab": True, "nodeSelector": {"pmip.io/mag": "true"}},
            },
        },
        "operator": {"otlpEndpoint": "http://otel-collector:4317", "jsonLogs": True},
    },
    "secondary-networks": {
        "defaultDomain": {
            "enabled": True,
            "name": "core",
            "spec": {
                "lma": {
                    "prefixPools": [{"prefix": "2001:db8:100::/48"}],
                    "networks": [{"name": "pmip-transport", "interface": "transport", "role": "Transport",
                                  "ips": ["2001:db8:ff::1/64"]}],
                    # The userspace tunnel: no seg6 sysctls on the pods' own networks.
                    "datapath": {"mode": "Tun"},
                },
                "mags": {
                    "networks": [
                        {"name": "pmip-transport", "interface": "transport", "role": "Transport"},
                        {"name": "pmip-access", "namespace": "radio", "interface": "access0", "role": "Access"},
                    ],
                },
            },
        },
    },
    "minimal": {
        "admissionPolicy": {"enabled": False},
        "metrics": {"service": {"enabled": False}},
        "serviceAccount": {"create": False, "name": "existing"},
        "tests": {"domain": "other"},
    },
    "namespaced-monitored": {
        "rbac": {"namespaced": True},
        "operator": {"watchNamespace": "pmip-lab", "priorityClassName": "system-cluster-critical"},
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "podMonitor": {"enabled": True, "interval": "15s"},
        },
    },
}

# Kinds each value set must render, beyond the operator's Deployment.
REQUIRED_KINDS = {
    "defaults": ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"],
    "default-domain": ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "MobilityDomain", "Pod",
                       "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"],
    "secondary-networks": ["MobilityDomain"],
    "minimal": ["ClusterRole", "ClusterRoleBinding"],
    "namespaced-monitored": ["ServiceAccount", "Role", "RoleBinding", "ServiceMonitor", "PodMonitor"],
}

# Kinds of the Prometheus Operator, which kubernetes-validate does not know: the fields the
# chart relies on, checked against the monitoring.coreos.com/v1 API as documented.
MONITOR_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {"type": "object", "required": ["name", "namespace"]},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {"type": "object"},
                    "namespaceSelector": {"type": "object"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["port"],
                            "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                           "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}},
                        },
                    },
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "PodMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {"type": "object", "required": ["name", "namespace"]},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "podMetricsEndpoints"],
                "properties": {
                    "selector": {"type": "object"},
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"any": {"type": "boolean"},
                                       "matchNames": {"type": "array", "items": {"type": "string"}}},
                    },
                    "podMetricsEndpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["port"],
                            "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                           "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}},
                        },
                    },
                },
            },
        },
    },
}

# Multus' NetworkAttachmentDefinition (k8s.cni.cncf.io/v1, Network Plumbing Working Group
# de-facto standard v1 §3), which kubernetes-validate does not know: the object's fields, and
# its `config` must be a CNI configuration (JSON, a cniVersion, a plugin type or a list).
NAD_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"config": {"type": "string"}},
        },
    },
}
CNI_CONFIG_SCHEMA = {
    "type": "object",
    "required": ["cniVersion", "name"],
    "properties": {"cniVersion": {"type": "string"}, "name": {"type": "string"},
                   "type": {"type": "string"},
                   "plugins": {"type": "array", "minItems": 1,
                               "items": {"type": "object", "required": ["type"]}}},
    "oneOf": [{"required": ["type"]}, {"required": ["plugins"]}],
}

# The operator's own list of the permissions it needs (operator/src/rbac.rs), passed by
# operator/tests/chart.rs; the rendered ClusterRole or Role must grant exactly these.
RBAC_RULES = os.environ.get("PMIP_RBAC_RULES")

# Values the schema must refuse.
BAD_VALUES = {
    "pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "unknown key": {"operatr": {}},
    "port": {"metrics": {"port": 70000}},
    "domain name": {"defaultDomain": {"enabled": True, "name": "Not_A_Name"}},
    "empty pools": {"defaultDomain": {"enabled": True, "name": "x", "spec": {"lma": {"prefixPools": []}}}},
    "namespaced flag": {"rbac": {"namespaced": "yes"}},
    "monitor interval": {"metrics": {"podMonitor": {"enabled": True, "interval": "soon"}}},
    "network role": {"defaultDomain": {"enabled": True, "name": "x", "spec": {"lma": {
        "prefixPools": [{"prefix": "2001:db8::/48"}],
        "networks": [{"name": "t", "interface": "t", "role": "Core"}]}}}},
    "network without interface": {"defaultDomain": {"enabled": True, "name": "x", "spec": {
        "lma": {"prefixPools": [{"prefix": "2001:db8::/48"}]},
        "mags": {"networks": [{"name": "t", "role": "Transport"}]}}}},
    "watch namespace": {"operator": {"watchNamespace": "Not A Namespace"}},
}

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def docs_of(text):
    return [d for d in yaml.safe_load_all(text) if d]


def crd_schemas():
    schemas = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for crd in docs_of(path.read_text()):
            kind = crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                api = f'{crd["spec"]["group"]}/{v["name"]}'
                schemas[(api, kind)] = v["schema"]["openAPIV3Schema"]
    return schemas


def openapi_to_jsonschema(s):
    """OpenAPI v3 `nullable` and the x-kubernetes extensions, as JSON Schema understands them."""
    if isinstance(s, dict):
        out = {k: openapi_to_jsonschema(v) for k, v in s.items() if not k.startswith("x-kubernetes")}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(s, list):
        return [openapi_to_jsonschema(x) for x in s]
    return s


def triples(rules):
    return {(g, r, v) for rule in rules for g in rule.get("apiGroups", [])
            for r in rule.get("resources", []) for v in rule.get("verbs", [])}


def check_rbac(where, doc):
    """The role grants exactly what the operator says it needs."""
    if RBAC_RULES is None:
        return
    want = triples(json.loads(pathlib.Path(RBAC_RULES).read_text()))
    got = triples(doc.get("rules") or [])
    if got != want:
        fail(f"{where}: {doc['kind']} grants {sorted(got - want)} beyond the operator's rules "
             f"and lacks {sorted(want - got)}")
    else:
        print(f"ok   {where}: {doc['kind']} grants exactly operator/src/rbac.rs")


def check_resources(where, doc):
    """Every container of a rendered pod has requests and limits."""
    spec = doc.get("spec") or {}
    pod = spec.get("template", {}).get("spec") if doc["kind"] != "Pod" else spec
    if not pod:
        return
    for c in (pod.get("initContainers") or []) + pod.get("containers", []):
        r = c.get("resources") or {}
        if not r.get("requests") or not r.get("limits"):
            fail(f"{where}: container {c['name']} lacks resource requests or limits: {r}")


def validate_object(where, doc, schemas):
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if (api, kind) in MONITOR_SCHEMAS:
        try:
            jsonschema.validate(doc, MONITOR_SCHEMAS[(api, kind)])
            print(f"ok   {where}: {kind} against the monitoring.coreos.com/v1 fields it uses")
        except jsonschema.ValidationError as e:
            fail(f"{where}: {kind} {doc['metadata'].get('name')}: {e.message}")
        return
    if (api, kind) == ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition"):
        try:
            jsonschema.validate(doc, NAD_SCHEMA)
            config = json.loads(doc["spec"]["config"])
            jsonschema.validate(config, CNI_CONFIG_SCHEMA)
            if config["name"] != doc["metadata"]["name"]:
                fail(f"{where}: {kind} {doc['metadata']['name']}: its CNI configuration is named {config['name']}")
            print(f"ok   {where}: {kind} {doc['metadata']['name']} and its CNI configuration")
        except (jsonschema.ValidationError, ValueError) as e:
            fail(f"{where}: {kind} {doc['metadata'].get('name')}: {getattr(e, 'message', e)}")
        return
    if kind in ("ClusterRole", "Role"):
        check_rbac(where, doc)
    if kind in ("Deployment", "DaemonSet", "Pod"):
        check_resources(where, doc)
    if (api, kind) in schemas:
        try:
            jsonschema.validate(doc, openapi_to_jsonschema(schemas[(api, kind)]))
            print(f"ok   {where}: {kind} against its CRD schema")
        except jsonschema.ValidationError as e:
            fail(f"{where}: {kind} {doc['metadata'].get('name')}: {e.message}")
        return
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{where}: {kind} {doc['metadata'].get('name')} (Kubernetes {version}): {e.message} at {list(e.path)}")
        except Exception as e:  # unknown kind/version for this Kubernetes release
            fail(f"{where}: {kind} {doc['metadata'].get('name')} (Kubernetes {version}): {e}")
    print(f"ok   {where}: {kind} {doc['metadata'].get('name')} for Kubernetes {', '.join(KUBE_VERSIONS)}")


def main():
    print(f"helm-c-sdk {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}")
    schemas = crd_schemas()
    if {k for (_, k) in schemas} != {"MobilityDomain", "MobileNode"}:
        fail(f"chart CRDs: expected MobilityDomain and MobileNode, found {sorted(schemas)}")

    # The CRDs themselves.
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for crd in docs_of(path.read_text()):
            validate_object(f"crds/{path.name}", crd, {})

    for name, values in VALUE_SETS.items():
        for version in KUBE_VERSIONS:
            report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{version}")
            problems = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
            problems += report.get("errors") or []
            if problems:
                fail(f"lint [{name}] Kubernetes {version}: {json.dumps(problems, indent=1)}")
            else:
                print(f"ok   lint [{name}] Kubernetes {version}")
        with helm.Chart.load(str(CHART)) as chart:
            chart.validate_schema(values)
            manifests = chart.render(values, name="pmip", namespace="pmip-system", is_install=True)
        kinds = []
        for template, text in sorted(manifests.items()):
            if not template.endswith((".yaml", ".yml")):
                continue
            for doc in docs_of(text):
                kinds.append(doc["kind"])
                validate_object(f"[{name}] {template}", doc, schemas)
        for required in ["Deployment"] + REQUIRED_KINDS[name]:
            if required not in kinds:
                fail(f"[{name}] renders no {required}: {kinds}")
        if name == "defaults" and ("MobilityDomain" in kinds or "Pod" in kinds):
            fail(f"[defaults] must not render a MobilityDomain or a test pod: {kinds}")
        if name == "namespaced-monitored" and ("ClusterRole" in kinds or "ClusterRoleBinding" in kinds):
            fail(f"[{name}] renders cluster-wide RBAC in the namespaced mode: {kinds}")
        notes = manifests.get("pmip/templates/NOTES.txt", "")
        if "pod-security.kubernetes.io/enforce=privileged" not in notes:
            fail(f"[{name}] NOTES.txt does not say which Pod Security level a domain needs")

    # A domain the chart makes goes where the operator watches, and `helm test` asks there.
    watched = {"rbac": {"namespaced": True}, "operator": {"watchNamespace": "pmip-lab"},
               "defaultDomain": VALUE_SETS["default-domain"]["defaultDomain"]}
    with helm.Chart.load(str(CHART)) as chart:
        docs = [d for tpl, text in chart.render(watched, name="pmip", namespace="pmip-system",
                                                is_install=True).items()
                if tpl.endswith(".yaml") for d in docs_of(text)]
    domains = [d["metadata"].get("namespace") for d in docs if d["kind"] == "MobilityDomain"]
    if domains != ["pmip-lab"]:
        fail(f"[watched namespace] the default domain is in {domains}, not pmip-lab")
    probes = [a for d in docs if d["kind"] == "Pod"
              for c in d["spec"]["containers"] for a in c.get("args", []) if ".svc:" in a]
    if not probes or not all(".pmip-lab.svc:" in a for a in probes):
        fail(f"[watched namespace] helm test asks {probes}")
    # Names Kubernetes limits to a DNS label (Services) stay within 63 characters, whatever
    # the release is called (Helm allows 53).
    with helm.Chart.load(str(CHART)) as chart:
        long_name = "r" * 53
        docs = [d for tpl, text in chart.render({}, name=long_name, namespace="pmip-system",
                                                is_install=True).items()
                if tpl.endswith(".yaml") for d in docs_of(text)]
    for d in docs:
        if d["kind"] == "Service" and len(d["metadata"]["name"]) > 63:
            fail(f"[release {long_name}] Service {d['metadata']['name']} is longer than 63")
    print("ok   domain namespace, helm test address and Service name lengths")

    with helm.Chart.load(str(CHART)) as chart:
        for what, values in BAD_VALUES.items():
            try:
                chart.validate_schema(values)
                fail(f"values.schema.json accepts bad values ({what}): {values}")
            except helm.HelmError:
                print(f"ok   values.schema.json refuses {what}")

    if failures:
        print(f"\n{len(failures)} chart check(s) failed", file=sys.stderr)
        return 1
    print("\nall chart checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
