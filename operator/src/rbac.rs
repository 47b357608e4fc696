//! The API permissions the operator needs, and nothing more: the chart's ClusterRole (or Role,
//! in the namespaced mode) is checked against [`RULES`] (`charts/pmip/ci/check_chart.py`), and
//! the mocked API server of the reconciler tests answers 403 to any request these rules do
//! not allow, as a real API server does.
//!
//! Server-side apply is a `patch`, and one that creates the object needs `create` as well
//! (the API server authorizes it as a create). An owner reference with `blockOwnerDeletion`
//! needs `update` on the owner's `finalizers` subresource where the
//! OwnerReferencesPermissionEnforcement admission plugin is on.

use serde_json::{Value, json};

/// One rule: an API group, resources (a subresource as `resource/sub`), verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

/// Everything the operator does with the API.
pub const RULES: &[Rule] = &[
    // Its own resources: read them; the MobileNode finalizer goes on and off by patch.
    Rule {
        group: "pmip.io",
        resources: &["mobilitydomains"],
        verbs: &["get", "list", "watch"],
    },
    Rule {
        group: "pmip.io",
        resources: &["mobilenodes"],
        verbs: &["get", "list", "watch", "patch"],
    },
    Rule {
        group: "pmip.io",
        resources: &["mobilitydomains/status", "mobilenodes/status"],
        verbs: &["patch"],
    },
    // blockOwnerDeletion on everything a domain owns.
    Rule {
        group: "pmip.io",
        resources: &["mobilitydomains/finalizers"],
        verbs: &["update"],
    },
    // What a domain owns, applied server-side; the watched ones also listed and watched.
    Rule {
        group: "",
        resources: &["configmaps"],
        verbs: &["list", "watch", "create", "patch"],
    },
    Rule {
        group: "",
        resources: &["services", "persistentvolumeclaims"],
        verbs: &["create", "patch"],
    },
    // The domain's CA and certificate: read to sign and to reach the daemons.
    Rule {
        group: "",
        resources: &["secrets"],
        verbs: &["get", "create", "patch"],
    },
    Rule {
        group: "apps",
        resources: &["deployments", "daemonsets"],
        verbs: &["list", "watch", "create", "patch"],
    },
    // The domain's pods: where the LMA and the MAGs run, and their addresses.
    Rule {
        group: "",
        resources: &["pods"],
        verbs: &["list", "watch"],
    },
    Rule {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
    },
];

/// Whether [`RULES`] allow `verb` on `resource` (or `resource/subresource`) of `group`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    RULES
        .iter()
        .any(|r| r.group == group && r.resources.contains(&resource) && r.verbs.contains(&verb))
}

/// The rules as Kubernetes PolicyRules, for the chart check.
pub fn policy_rules() -> Value {
    Value::Array(
        RULES
            .iter()
            .map(|r| json!({"apiGroups": [r.group], "resources": r.resources, "verbs": r.verbs}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_allow_what_they_list_and_nothing_else() {
        assert!(allows("apps", "daemonsets", "patch"));
        assert!(allows("pmip.io", "mobilitydomains/finalizers", "update"));
        assert!(!allows("pmip.io", "mobilitydomains", "patch"));
        assert!(!allows("", "secrets", "list"), "no listing every Secret");
        assert!(!allows("", "nodes", "get"));
        assert_eq!(policy_rules().as_array().unwrap().len(), RULES.len());
    }
}
