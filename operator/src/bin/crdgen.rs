//! Prints the CustomResourceDefinitions of pmip as YAML, one document each, the form checked
//! in under `crds/` and shipped in the chart: `crdgen > crds/pmip.io.yaml`.

fn main() -> anyhow::Result<()> {
    print!("{}", operator::crd_yaml()?);
    Ok(())
}
