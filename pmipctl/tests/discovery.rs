//! Discovery as gRPC tools do it: server reflection, both `v1` and the `v1alpha` that Python's
//! grpcio-reflection (and many other tools) still use, lists each daemon's own services and
//! describes them; `pmipctl` pointed at the wrong daemon says which one it reached.

mod daemons;

use std::collections::BTreeSet;

use daemons::{Lma, Mag, pmipctl, stderr};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// Lists the services over reflection v1alpha with Python's grpcio-reflection, and resolves
/// each one's methods through it: `{service: [method, ...]}`.
const PYTHON: &str = r#"
import json, sys, grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
db = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(sys.argv[1]))
pool = DescriptorPool(db)
print(json.dumps({s: sorted(m.name for m in pool.FindServiceByName(s).methods) for s in db.get_services()}))
"#;

async fn python_reflection(url: &str) -> serde_json::Value {
    let target = url.trim_start_matches("http://").to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", PYTHON, &target])
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python3 with grpcio-reflection (.ci/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The services listed over reflection v1.
async fn v1_services(url: &str) -> BTreeSet<String> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match answers.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("{other:?}"),
    }
}

fn expected(own: &[&str]) -> BTreeSet<String> {
    own.iter()
        .chain(&[
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ])
        .map(|s| s.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_daemon_advertises_its_own_services_over_reflection_v1_and_v1alpha() {
    let lma = Lma::start().await;
    let mag = Mag::start().await;
    let lma_services = expected(&["pmip.v1.BindingCache", "pmip.v1.Policy"]);
    let mag_services = expected(&["pmip.v1.Gateway"]);
    assert_eq!(v1_services(&lma.url).await, lma_services);
    assert_eq!(v1_services(&mag.url).await, mag_services);

    let py = python_reflection(&lma.url).await;
    let listed: BTreeSet<String> = py.as_object().unwrap().keys().cloned().collect();
    assert_eq!(listed, lma_services, "{py}");
    let methods =
        |service: &str| -> Vec<String> { serde_json::from_value(py[service].clone()).unwrap() };
    assert!(
        methods("pmip.v1.BindingCache").contains(&"Watch".to_owned()),
        "{py}"
    );
    assert!(
        methods("grpc.health.v1.Health").contains(&"Check".to_owned()),
        "{py}"
    );

    let py = python_reflection(&mag.url).await;
    let listed: BTreeSet<String> = py.as_object().unwrap().keys().cloned().collect();
    assert_eq!(listed, mag_services, "{py}");
    assert!(
        !py["pmip.v1.Gateway"].as_array().unwrap().is_empty(),
        "{py}"
    );

    mag.stop().await;
    lma.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pmipctl_pointed_at_the_wrong_daemon_says_which_it_reached() {
    let lma = Lma::start().await;
    let mag = Mag::start().await;
    let o = pmipctl(&["--lma", &mag.url, "bindings", "list"]).await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{} is a MAG, not an LMA", mag.url)) && err.contains("--lma"),
        "{err}"
    );
    assert!(err.contains("pmip.v1.Gateway"), "{err}");
    let o = pmipctl(&["--mag", &lma.url, "mag", "bul"]).await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{} is an LMA, not a MAG", lma.url)) && err.contains("--mag"),
        "{err}"
    );
    mag.stop().await;
    lma.stop().await;
}
