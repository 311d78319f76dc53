//! Replays every input kept under `fuzz/regressions/<target>/` through the
//! same checks the fuzz targets run (the check code is shared with
//! `fuzz/src`), so a decoder bug the fuzzer once found stays fixed without
//! libFuzzer or a nightly toolchain in CI.

#[allow(dead_code)]
#[path = "../../../fuzz/src/checks.rs"]
mod checks;
#[allow(dead_code)]
#[path = "../../../fuzz/src/http.rs"]
mod http;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

fn replay(target: &str, check: impl Fn(&[u8])) {
    for f in inputs(target) {
        let data = std::fs::read(&f).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        assert!(r.is_ok(), "{target}: {} fails again", f.display());
    }
}

#[test]
fn context_token_inputs() {
    replay("context_token", checks::context_token);
}

#[test]
fn rpc_frame_inputs() {
    replay("rpc_frame", checks::rpc_frame);
}

#[test]
fn object_inputs() {
    replay("object", checks::object);
}

#[test]
fn quorum_param_inputs() {
    replay("quorum_param", checks::quorum_param);
}

#[test]
fn http_api_inputs() {
    replay("http_api", |d| http::Node::get().serve_bytes(d));
}
