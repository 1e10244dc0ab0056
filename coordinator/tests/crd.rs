//! The committed CRDs are exactly what the Rust types generate.

#[test]
fn committed_crds_match_the_types() {
    let committed = include_str!("../../deploy/crds/kafka.stoker.io.yaml");
    let generated = stoker_coordinator::crd::all_crds_yaml();
    assert!(
        committed == generated,
        "deploy/crds/kafka.stoker.io.yaml is out of date; run `cargo run -p stoker-coordinator -- crd > deploy/crds/kafka.stoker.io.yaml` and commit it"
    );
}
