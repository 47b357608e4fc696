#!/usr/bin/env python3
"""Validate the Kubernetes objects in the YAML files given (e.g. an example and what the
operator renders from it) as check_chart.py validates the chart's: every kind against the
API of each Kubernetes version in KUBE_VERSIONS, the pmip kinds against the chart's CRD
schemas, NetworkAttachmentDefinitions and their CNI configurations against the Multus
standard's fields. Exits 0 when all pass, 1 on a failure, 2 when a tool is missing.

python3 charts/pmip/ci/validate_manifests.py FILE...
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import check_chart  # noqa: E402  (exits 2 when a tool is missing)


def main(paths):
    schemas = check_chart.crd_schemas()
    kinds = []
    for path in paths:
        for doc in check_chart.docs_of(pathlib.Path(path).read_text()):
            kinds.append(doc["kind"])
            check_chart.validate_object(pathlib.Path(path).name, doc, schemas)
    if not kinds:
        check_chart.fail("no objects")
    if check_chart.failures:
        print(f"\n{len(check_chart.failures)} check(s) failed", file=sys.stderr)
        return 1
    print(f"\nall manifests valid: {', '.join(sorted(set(kinds)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
