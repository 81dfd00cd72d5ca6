//! The LM ladder of `shared/fixtures/lm/L1` through the same loaders users use (`mrt conformance`).

use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/lm").join(name)
}

#[test]
fn l1_ladder_passes_on_flex() {
    let dir = fixture("L1");
    assert!(dir.join("config.json").is_file(), "fixture set missing: {}", dir.display());
    let report = mrt::conformance::run(&dir, &mrt::Target::host()).expect("ladder runs");
    println!("{report}");
    assert!(report.checks.len() >= 9, "every rung ran: {report}");
    assert!(report.passed(), "failed rungs: {:#?}", report.failures());
}

#[test]
fn a_corrupt_checkpoint_names_the_tensor_and_file() {
    // Copy L1's checkpoint, truncate one chunk file, and expect an error naming both.
    let src = fixture("L1").join("checkpoint");
    let dst = std::env::temp_dir().join(format!("mrt-corrupt-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    copy_dir(&src, &dst);
    let victim = dst.join("target.encoder.layers_0.mlp.wo.kernel").join("0.0");
    let bytes = std::fs::read(&victim).expect("chunk exists");
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let config = mrt::v1::lm::LmConfig::from_json_file(&fixture("L1").join("config.json")).unwrap();
    let err = match mrt::v1::lm::weights::HostWeights::from_t5x(&dst, &config) {
        Ok(_) => panic!("a truncated chunk must not load"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("encoder.layers_0.mlp.wo.kernel"), "{err}");
    // A missing tensor directory is named too.
    std::fs::remove_dir_all(dst.join("target.decoder.decoder_norm.scale")).unwrap();
    let err = match mrt::v1::lm::weights::HostWeights::from_t5x(&dst, &config) {
        Ok(_) => panic!("a missing tensor must not load"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("decoder.decoder_norm.scale"), "{err}");
    std::fs::remove_dir_all(&dst).unwrap();
}

#[test]
fn the_wrong_size_preset_is_rejected_with_the_tensor_named() {
    let err = match mrt::v1::lm::weights::HostWeights::from_t5x(&fixture("L1").join("checkpoint"), &mrt::v1::lm::LmConfig::base()) {
        Ok(_) => panic!("L1 is not a base checkpoint"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("shape") || err.contains("tensors"), "{err}");
}

fn copy_dir(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}
