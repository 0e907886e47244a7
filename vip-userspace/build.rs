//! Embeds the eBPF object built by `cargo xtask build`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=VIP_EBPF_OBJ");
    let object = match std::env::var_os("VIP_EBPF_OBJ") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/bpfel-unknown-none/release/vip-ebpf"),
    };
    if !object.exists() {
        panic!(
            "the eBPF object {} is missing: build with `cargo xtask build` (it builds the \
             datapath first), or set VIP_EBPF_OBJ",
            object.display()
        );
    }
    let object = object.canonicalize().expect("canonical eBPF object path");
    println!("cargo:rerun-if-changed={}", object.display());
    println!("cargo:rustc-env=VIP_EBPF_OBJ={}", object.display());
}
