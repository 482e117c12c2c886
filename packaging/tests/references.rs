//! The Dockerfiles, image script, e2e script and Vagrant files refer to things that exist: workspace packages and
//! their `[[bin]]` names, the system packages their build scripts need, Dockerfiles, example manifests, the kind
//! config and the chart; and image names agree between the script, the chart and the operator.

mod common;

use std::collections::BTreeSet;

use common::{packages, path_closure, read, repo};

/// `cargo build … -p PKG --bin BIN` of a Dockerfile.
fn cargo_build(dockerfile: &str) -> (String, String) {
    let text = read(dockerfile);
    let line = text
        .lines()
        .find(|l| l.contains("cargo build"))
        .unwrap_or_else(|| panic!("{dockerfile} runs no cargo build"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
            .unwrap_or_else(|| panic!("{dockerfile}: cargo build without {flag}"))
    };
    assert!(
        line.contains("--locked") && line.contains("--release"),
        "{dockerfile}: build --release --locked"
    );
    (after("-p"), after("--bin"))
}

/// The Debian packages a Dockerfile's build stage installs.
fn apt_packages(dockerfile: &str) -> BTreeSet<String> {
    let text = read(dockerfile).replace("\\\n", " ");
    let build_stage = text.split("\nFROM ").nth(1).unwrap_or(&text).to_string();
    let mut out = BTreeSet::new();
    for line in build_stage
        .lines()
        .filter(|l| l.contains("apt-get install"))
    {
        let after = &line[line.find("apt-get install").expect("install") + 15..];
        for w in after.split_whitespace() {
            if w == "&&" {
                break;
            }
            if !w.starts_with('-') {
                out.insert(w.to_string());
            }
        }
    }
    out
}

#[test]
fn dockerfiles_build_binaries_that_exist_with_the_tools_their_build_scripts_need() {
    let pkgs = packages();
    let dockerfiles = common::files("docker", ".Dockerfile");
    assert_eq!(dockerfiles.len(), 3, "{dockerfiles:?}");
    for df in &dockerfiles {
        let (pkg, bin) = cargo_build(df);
        let p = pkgs.get(&pkg).unwrap_or_else(|| {
            panic!("{df} builds package {pkg}, which is not a workspace member")
        });
        assert!(
            p.bins.contains(&bin),
            "{df} builds --bin {bin}; {pkg} has {:?}",
            p.bins
        );
        let text = read(df);
        assert!(
            text.contains(&format!("target/release/{bin} ")),
            "{df} does not copy target/release/{bin}"
        );
        assert!(
            text.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")),
            "{df}: the entrypoint is not /usr/local/bin/{bin}"
        );
        // What the build scripts of everything it compiles from the workspace need.
        let apt = apt_packages(df);
        for dir in path_closure(&p.dir, &pkgs) {
            let build_rs = repo().join(&dir).join("build.rs");
            let Ok(script) = std::fs::read_to_string(&build_rs) else {
                continue;
            };
            let mut needs = Vec::new();
            if script.contains("clang") {
                needs.extend(["clang", "llvm", "libbpf-dev", "linux-libc-dev"]);
            }
            if script.contains("protoc") {
                needs.push("protobuf-compiler");
            }
            for n in needs {
                assert!(
                    apt.contains(n),
                    "{df}: {dir}/build.rs needs {n}, the build stage installs {apt:?}"
                );
            }
        }
        assert!(
            repo().join(format!("{df}.dockerignore")).is_file(),
            "{df} has no .dockerignore"
        );
    }
}

#[test]
fn images_run_as_the_users_the_pods_expect() {
    let last_user = |df: &str| {
        read(df)
            .lines()
            .filter_map(|l| l.strip_prefix("USER "))
            .next_back()
            .unwrap_or_else(|| panic!("{df} sets no USER"))
            .to_string()
    };
    // The operator runs non-root (the chart sets runAsNonRoot with uid 65532).
    assert_eq!(last_user("docker/operator.Dockerfile"), "65532:65532");
    let deployment = read("charts/build-vnf/templates/deployment.yaml");
    assert!(deployment.contains("runAsNonRoot: true") && deployment.contains("runAsUser: 65532"));
    assert!(
        deployment.contains("drop: [\"ALL\"]")
            && deployment.contains("readOnlyRootFilesystem: true")
    );
    // The data plane is uid 0 with three capabilities, as operator/src/render.rs renders its pod.
    assert_eq!(last_user("docker/cnf-dataplane.Dockerfile"), "0:0");
    let render = read("operator/src/render.rs");
    assert!(render.contains("\"BPF\".into(), \"NET_ADMIN\".into(), \"PERFMON\".into()"));
}

#[test]
fn build_script_and_chart_agree_on_image_names() {
    let script = read("scripts/build-images.sh");
    let values = common::yaml("charts/build-vnf/values.yaml");
    for (image, dockerfile) in [
        ("operator", "docker/operator.Dockerfile"),
        ("cnf-dataplane", "docker/cnf-dataplane.Dockerfile"),
        ("pktgen", "docker/pktgen.Dockerfile"),
    ] {
        assert!(repo().join(dockerfile).is_file(), "{dockerfile} missing");
        assert!(
            script.contains(&format!("{image})")),
            "build-images.sh does not know image {image}"
        );
    }
    assert!(script.contains("dockerfile=\"docker/${image}.Dockerfile\""));
    let registry = "ghcr.io/build-vnf";
    assert!(script.contains(&format!("registry=\"${{BUILDVNF_REGISTRY:-{registry}}}\"")));
    for (key, name) in [
        ("operator", "buildvnf-operator"),
        ("dataplane", "cnf-dataplane"),
    ] {
        assert_eq!(
            values[key]["image"]["repository"].as_str(),
            Some(format!("{registry}/{name}").as_str()),
            "values.yaml {key}.image.repository is not what build-images.sh builds"
        );
        assert!(
            script.contains(&format!("echo \"{name}\"")),
            "build-images.sh does not name {name}"
        );
    }
    assert!(script.contains("echo \"buildvnf-pktgen\""));
}

#[test]
fn e2e_script_refers_to_files_that_exist() {
    let e2e = read("scripts/e2e.sh");
    let mut checked = 0;
    for word in
        e2e.split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '(' || c == ')')
    {
        let w = word.trim_end_matches([';', ',']);
        let is_path = [
            "examples/",
            "kind-config/",
            "charts/",
            "scripts/",
            "docker/",
        ]
        .iter()
        .any(|p| w.starts_with(p));
        if is_path && !w.contains('*') && !w.contains('$') {
            assert!(
                repo().join(w).exists(),
                "scripts/e2e.sh refers to {w}, which does not exist"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} paths found in e2e.sh");
    assert!(e2e.contains("examples/*.yaml") && e2e.contains("examples/invalid/*.yaml"));
    // Every invalid example says which layer refuses it; e2e.sh relies on that line.
    for f in common::files("examples/invalid", ".yaml") {
        assert!(
            read(&f).lines().any(|l| l.starts_with("# crd: ")),
            "{f} has no '# crd:' line"
        );
    }
    // The images it runs are the ones build-images.sh builds.
    assert!(
        e2e.contains("/buildvnf-pktgen:")
            && e2e.contains("/buildvnf-operator\"")
            && e2e.contains("/cnf-dataplane\"")
    );
    // The commands it runs in the pktgen image exist in pktgen's CLI.
    let pktgen = read("pktgen/src/main.rs");
    for flag in ["dst", "count", "rate", "flows", "bind", "duration", "json"] {
        assert!(e2e.contains(&format!("--{flag} ")));
        assert!(
            pktgen.contains(&format!("    {flag}: ")),
            "pktgen has no --{flag}"
        );
    }
    assert!(pktgen.contains("Recv(RecvArgs)") && pktgen.contains("Send(SendArgs)"));
    // The release name makes the operator Deployment `build-vnf-operator` (fullname = release name).
    assert!(
        e2e.contains("upgrade --install build-vnf charts/build-vnf")
            && e2e.contains("deploy/build-vnf-operator")
    );
    // The metric names it reads are exported.
    let series = common::exported_series();
    for m in common::metric_tokens(&e2e) {
        assert!(
            series.contains(&m),
            "e2e.sh reads {m}, which the code does not export"
        );
    }
}

#[test]
fn vagrant_provisions_with_the_checked_script() {
    let vf = read("vagrant/Vagrantfile");
    assert!(
        vf.contains("provision.sh"),
        "the Vagrantfile does not run provision.sh"
    );
    assert!(
        vf.contains("ubuntu-24.04"),
        "the Vagrantfile does not use an Ubuntu 24.04 box"
    );
    for p in ["virtualbox", "libvirt", "CPUS", "MEMORY"] {
        assert!(vf.contains(p), "the Vagrantfile lacks {p}");
    }
    let prov = read("vagrant/provision.sh");
    for tool in [
        "docker",
        "kind",
        "kubectl",
        "helm",
        "rustup",
        "1.95",
        "clang",
        "libbpf-dev",
        "protobuf-compiler",
    ] {
        assert!(prov.contains(tool), "provision.sh does not install {tool}");
    }
    for step in [
        "kind-config/cluster.yaml",
        "scripts/build-images.sh",
        "kube-prometheus-stack",
        "charts/build-vnf",
    ] {
        assert!(prov.contains(step), "provision.sh does not use {step}");
        let path = step.split_whitespace().next().unwrap_or(step);
        if path.contains('/') {
            assert!(repo().join(path).exists(), "{path} missing");
        }
    }
}
