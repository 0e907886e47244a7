//! The eBPF toolchain: nightly's rust-src, and bpf-linker built against nightly's
//! own libLLVM (no system LLVM needed), cached under target/.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

use crate::command::{clean_env, run};

/// The toolchain that compiles the eBPF crate.
pub const EBPF_TOOLCHAIN: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";

struct Rustc {
    release: String,
    commit: String,
    llvm_major: String,
    sysroot: PathBuf,
}

fn rustc_info() -> anyhow::Result<Rustc> {
    let out = Command::new("rustc")
        .args([&format!("+{EBPF_TOOLCHAIN}"), "-vV"])
        .output()
        .context("running rustc +nightly -vV (is the nightly toolchain installed?)")?;
    if !out.status.success() {
        bail!(
            "rustc +{EBPF_TOOLCHAIN} -vV failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .with_context(|| format!("rustc -vV has no {key}"))
    };
    let llvm = field("LLVM version:")?;
    let sysroot = Command::new("rustc")
        .args([&format!("+{EBPF_TOOLCHAIN}"), "--print", "sysroot"])
        .output()
        .context("rustc --print sysroot")?;
    Ok(Rustc {
        release: field("release:")?,
        commit: field("commit-hash:")?,
        llvm_major: llvm.split('.').next().unwrap_or_default().to_string(),
        sysroot: PathBuf::from(String::from_utf8(sysroot.stdout)?.trim()),
    })
}

pub fn ensure_rust_src() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            EBPF_TOOLCHAIN,
        ])
        .output()
        .context("running rustup")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for {EBPF_TOOLCHAIN}");
    run(
        Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            EBPF_TOOLCHAIN,
        ]),
        "rustup component add rust-src",
    )
}

/// The directory holding `bpf-linker`, installing it on first use.
pub fn bpf_linker_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let rustc = rustc_info()?;
    let key = format!(
        "{}-{}",
        rustc.release,
        &rustc.commit[..rustc.commit.len().min(12)]
    );
    let install_root = root.join("target/bpf-linker").join(key);
    let bin = install_root.join("bin");
    if bin.join("bpf-linker").exists() {
        return Ok(bin);
    }
    let lib = rustc.sysroot.join("lib");
    let llvm_lib = find_llvm_dylib(&lib)?;
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {}",
        lib.join(format!("lib{llvm_lib}.so")).display()
    );
    let rustflags = [
        "-L".to_string(),
        format!("native={}", lib.display()),
        "-l".to_string(),
        format!("dylib={llvm_lib}"),
        "-C".to_string(),
        format!("link-arg=-Wl,-rpath,{}", lib.display()),
    ]
    .join("\x1f");
    let mut cargo = Command::new("cargo");
    cargo
        .arg(format!("+{EBPF_TOOLCHAIN}"))
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
        ])
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{},no-llvm-linking", rustc.llvm_major))
        .args(["--target", "x86_64-unknown-linux-gnu", "--root"])
        .arg(&install_root)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_TARGET_DIR", root.join("target/bpf-linker/build"));
    clean_env(&mut cargo);
    run(&mut cargo, "cargo install bpf-linker")?;
    Ok(bin)
}

/// The name to link for the toolchain's libLLVM: `libLLVM-22-rust-1.97.0-nightly.so`
/// gives `LLVM-22-rust-1.97.0-nightly`.
fn find_llvm_dylib(lib: &Path) -> anyhow::Result<String> {
    for entry in std::fs::read_dir(lib).with_context(|| format!("reading {}", lib.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_prefix("lib").and_then(|n| n.strip_suffix(".so")) {
            if stem.starts_with("LLVM-") {
                return Ok(stem.to_string());
            }
        }
    }
    bail!("no libLLVM-*.so in {}", lib.display())
}
