//! The Debian package `cargo xtask dist` builds (`$VIP_DEB`, which `cargo xtask
//! test` sets): unpacked into a scratch root, it holds the binary (which runs),
//! the systemd unit as deploy/ has it, the example config as a conffile (and a
//! config vip accepts), a man page per subcommand, bash, zsh and fish
//! completions, and the licenses; its maintainer scripts never start the
//! service or stop it on an upgrade.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use clap::CommandFactory;

fn deb() -> PathBuf {
    let path = std::env::var_os("VIP_DEB").map(PathBuf::from).expect(
        "VIP_DEB names the package: run the tests with `cargo xtask test`, which builds it",
    );
    assert!(path.exists(), "{} is missing", path.display());
    path
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("dpkg-deb is installed (cargo xtask test installs dpkg)");
    assert!(
        out.status.success(),
        "dpkg-deb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn repo_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn gunzip(path: &Path) -> String {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("gzip");
    assert!(out.status.success(), "{} is not gzip", path.display());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_package_holds_what_a_server_needs() {
    let deb = deb();
    let version = env!("CARGO_PKG_VERSION");
    let fields = dpkg_deb(&["-f"], &deb);
    for wanted in [
        "Package: vip\n".to_string(),
        format!("Version: {version}-1\n"),
        "Architecture: amd64\n".to_string(),
        "Section: net\n".to_string(),
    ] {
        assert!(fields.contains(&wanted), "no {wanted:?} in:\n{fields}");
    }

    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root)
        .status()
        .unwrap();
    assert!(out.success());
    let control = root.join("DEBIAN");
    let out = Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&control)
        .status()
        .unwrap();
    assert!(out.success());

    // The binary, and it runs.
    let vip = root.join("usr/bin/vip");
    assert_eq!(
        std::fs::metadata(&vip).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let out = Command::new(&vip).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("vip {version}\n")
    );

    // The unit as deploy/ has it; its ExecStart is the packaged binary.
    let unit = read(root, "usr/lib/systemd/system/vip.service");
    assert_eq!(unit, repo_file("deploy/vip.service"));
    assert!(unit.contains("ExecStart=/usr/bin/vip run --keep-datapath --config /etc/vip/vip.toml"));

    // The example config: a conffile, and one vip accepts.
    assert_eq!(read(&control, "conffiles"), "/etc/vip/vip.toml\n");
    assert!(
        read(&control, "control").contains("\nRecommends: bird2\n"),
        "the package recommends BIRD for [bgp]"
    );
    let config = read(root, "etc/vip/vip.toml");
    assert_eq!(config, repo_file("deploy/vip.toml"));
    let parsed = vip_userspace::Config::parse(&config, Path::new("/etc/vip/vip.toml"))
        .unwrap_or_else(|e| panic!("the packaged config: {e}"));
    assert_eq!(parsed.ranges.len(), 1);

    // A man page for vip and for each of its subcommands, from clap.
    let cli = vip_userspace::cli::Cli::command();
    let mut pages = vec![cli.get_name().to_string()];
    pages.extend(
        cli.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("vip-{}", s.get_name())),
    );
    assert!(pages.len() > 5, "{pages:?}");
    for page in &pages {
        let text = gunzip(&root.join(format!("usr/share/man/man1/{page}.1.gz")));
        assert!(
            text.starts_with(&format!(
                ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH {page} 1"
            )),
            "{page}.1: {}",
            &text[..text.len().min(200)]
        );
    }

    // Completions where bash-completion, zsh and fish look for them.
    assert!(read(root, "usr/share/bash-completion/completions/vip").contains("complete -F _vip"));
    assert!(read(root, "usr/share/zsh/vendor-completions/_vip").starts_with("#compdef vip"));
    assert!(read(root, "usr/share/fish/vendor_completions.d/vip.fish").contains("complete -c vip"));

    // The licenses.
    let copyright = read(root, "usr/share/doc/vip/copyright");
    assert!(copyright.contains("MIT OR Apache-2.0"), "{copyright}");
    assert_eq!(
        read(root, "usr/share/doc/vip/LICENSE-MIT"),
        repo_file("LICENSE-MIT")
    );
    assert_eq!(
        read(root, "usr/share/doc/vip/LICENSE-APACHE"),
        repo_file("LICENSE-APACHE")
    );

    // deploy/'s files for the monitoring side and Kubernetes, as examples.
    for example in [
        "prometheus.yml",
        "prometheus-kubernetes.yml",
        "vip-alerts.yml",
        "vip-alerts.test.yml",
        "grafana-dashboard.json",
        "daemonset.yaml",
    ] {
        assert_eq!(
            read(root, &format!("usr/share/doc/vip/examples/{example}")),
            repo_file(&format!("deploy/{example}")),
            "{example}"
        );
    }

    // Installing never starts the service (the example config is to be edited
    // first), and an upgrade neither stops nor restarts it (that would revert
    // the host state): only removal stops it.
    let postinst = read(&control, "postinst");
    assert!(!postinst.contains("start"), "postinst:\n{postinst}");
    let prerm = read(&control, "prerm");
    let stops: Vec<&str> = prerm.lines().filter(|l| l.contains("stop")).collect();
    assert_eq!(
        stops,
        ["\tdeb-systemd-invoke stop vip.service >/dev/null || true"],
        "prerm:\n{prerm}"
    );
    assert!(
        prerm.contains("[ \"$1\" = remove ]"),
        "prerm stops on removal only:\n{prerm}"
    );
}
