//! Regenerates the checked-in gRPC code from `proto/` and fails when it drifts, so the
//! binaries build without `protoc` while the `.proto` files stay the source of truth.
//! Run with `STOKER_UPDATE_PROTO=1` to rewrite `src/gen/` after editing a `.proto`.

use std::path::{Path, PathBuf};

#[test]
fn generated_code_matches_proto_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("a temp dir can be created");
    generate(root, out.path());

    let gen_dir = root.join("src/gen");
    let update = std::env::var_os("STOKER_UPDATE_PROTO").is_some();
    let mut drifted = Vec::new();
    for entry in std::fs::read_dir(out.path()).expect("the output dir is readable") {
        let generated = entry.expect("a dir entry").path();
        let name = generated.file_name().expect("a file name").to_owned();
        let fresh = std::fs::read_to_string(&generated).expect("generated code is UTF-8");
        let committed_path = gen_dir.join(&name);
        let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
        if fresh != committed {
            if update {
                std::fs::write(&committed_path, &fresh).expect("src/gen is writable");
            } else {
                drifted.push(committed_path);
            }
        }
    }
    assert!(
        drifted.is_empty(),
        "generated gRPC code is out of date: {drifted:?}; run `STOKER_UPDATE_PROTO=1 cargo test -p stoker-proto --test bootstrap` and commit src/gen"
    );
}

fn generate(root: &Path, out: &Path) {
    let protoc: PathBuf = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc exists");
    let include = root.join("proto");
    let files = [include.join("stoker/agent/v1/agent.proto")];
    // The vendored protoc is handed to prost directly instead of through PROTOC, so the
    // test never mutates the process environment.
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc).btree_map(["."]);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .out_dir(out)
        .type_attribute(
            ".stoker.agent.v1.DesiredConfig",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"camelCase\", default)]",
        )
        .type_attribute(
            ".stoker.agent.v1.BrokerRef",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"camelCase\", default)]",
        )
        .type_attribute(
            ".stoker.agent.v1.Listener",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"camelCase\", default)]",
        )
        .type_attribute(
            ".stoker.agent.v1.SecretFileRef",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"camelCase\", default)]",
        )
        .compile_with_config(config, &files, &[include])
        .expect("the .proto files compile");
}
