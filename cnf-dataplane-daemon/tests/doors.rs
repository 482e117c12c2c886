//! The chain's doors over the real daemon: gRPC ApplyChain reads a chain with the strict reader of
//! `vnfctl validate` and `cnf-dataplane --config` (a misspelt key is refused with its path and the field it
//! was meant to be, and the running chain keeps denying what it denied), every file of examples/invalid/ is
//! refused by all four doors with the same first message, and the generation rule (positive, one spec per
//! generation, forward above every generation applied or back to one applied here with its spec, nothing
//! after Detach) holds over real gRPC: the operator's rollback is accepted, a stale generation is not.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Namespaces, in_ns};
use dataplane_api::dataplane_client::DataplaneClient;
use dataplane_api::{ApplyChainRequest, ChainRef, DetachRequest, GetStatusRequest};
use tonic::transport::Channel;

/// Denies UDP port 9, allows the rest; the chain's name is `lab/t`.
static CHAIN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| testkit::fixtures::deny_udp9_chain("t", "cnf0"));

/// A daemon running [`CHAIN`] in namespace `<tag>c`, with a client namespace `<tag>s` on 10.78.0.0/24.
struct Lab {
    namespaces: Namespaces,
    _daemon: daemon::Daemon,
    rt: tokio::runtime::Runtime,
    client: DataplaneClient<Channel>,
    dir: PathBuf,
}

impl Lab {
    fn start(tag: &str) -> Self {
        let namespaces = Namespaces::new(&[&format!("{tag}c"), &format!("{tag}s")]);
        namespaces.link(0, "cnf0", "10.78.0.1/24", 1, "cli0", "10.78.0.2/24");
        let dir = std::env::temp_dir().join(format!("vnf-door-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let config = dir.join("chain.yaml");
        std::fs::write(&config, &*CHAIN).expect("write chain");
        let sock = dir.join("dp.sock");
        let d = daemon::Daemon::start(
            &namespaces.0[0],
            &[
                "--config",
                config.to_str().expect("path"),
                "--grpc-socket",
                sock.to_str().expect("path"),
                "--metrics-listen",
                "127.0.0.1:9090",
            ],
            dir.join("daemon.log"),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = daemon::grpc_unix(&rt, sock);
        Self {
            namespaces,
            _daemon: d,
            rt,
            client,
            dir,
        }
    }

    fn apply(
        &mut self,
        namespace: &str,
        name: &str,
        generation: i64,
        spec_json: &str,
    ) -> Result<dataplane_api::ApplyChainResponse, tonic::Status> {
        let req = ApplyChainRequest {
            chain: Some(ChainRef {
                namespace: namespace.into(),
                name: name.into(),
            }),
            generation,
            spec_json: spec_json.into(),
        };
        let client = &mut self.client;
        self.rt
            .block_on(client.apply_chain(req))
            .map(|r| r.into_inner())
    }

    fn generation(&mut self) -> i64 {
        let client = &mut self.client;
        self.rt
            .block_on(client.get_status(GetStatusRequest {}))
            .expect("status")
            .into_inner()
            .applied_generation
    }

    /// Sends `count` datagrams from the client to each of `ports` and returns how many arrived, per port.
    fn delivered(&self, ports: &[u16], count: usize) -> Vec<usize> {
        let sockets: Vec<UdpSocket> = ports
            .iter()
            .map(|p| {
                in_ns(&self.namespaces.0[0], || {
                    let s = UdpSocket::bind(("10.78.0.1", *p)).expect("bind receiver");
                    s.set_read_timeout(Some(Duration::from_millis(300)))
                        .expect("timeout");
                    s
                })
            })
            .collect();
        in_ns(&self.namespaces.0[1], || {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind sender");
            for p in ports {
                for _ in 0..count {
                    s.send_to(b"build-vnf", ("10.78.0.1", *p)).expect("send");
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        sockets
            .iter()
            .map(|s| {
                let mut buf = [0u8; 64];
                let mut n = 0;
                while s.recv(&mut buf).is_ok() {
                    n += 1;
                }
                n
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The JSON of [`CHAIN`]'s spec with its firewall rule replaced by `rule` (JSON).
fn spec_with_rule(rule: &str) -> String {
    format!(
        r#"{{"functions":[{{"name":"fw","type":"firewall","firewall":{{"defaultAction":"allow","rules":[{rule}]}}}},{{"name":"mon","type":"monitor","monitor":{{}}}}],"interfaces":{{"ingress":"cnf0"}}}}"#
    )
}

fn deny_udp(port: u16) -> String {
    spec_with_rule(&format!(
        r#"{{"action":"deny","protocol":"udp","destinationPorts":[{{"from":{port}}}]}}"#
    ))
}

#[test]
fn grpc_refuses_a_misspelt_rule_key_and_the_running_chain_keeps_denying() {
    if !common::privileged() {
        return;
    }
    let mut lab = Lab::start("dr1");
    assert_eq!(
        lab.delivered(&[9, 10], 5),
        [0, 5],
        "generation 1 denies port 9 and passes port 10"
    );
    // `destinationPort` for `destinationPorts`: read leniently, the rule would deny every UDP port.
    let misspelt =
        spec_with_rule(r#"{"action":"deny","protocol":"udp","destinationPort":[{"from":10}]}"#);
    let e = lab
        .apply("lab", "t", 2, &misspelt)
        .expect_err("an unknown field is refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert_eq!(
        e.message().lines().next(),
        Some(
            "spec.functions[0].firewall.rules[0].destinationPort: unknown field `destinationPort`; \
             did you mean `destinationPorts`?"
        ),
        "{}",
        e.message()
    );
    assert_eq!(lab.generation(), 1, "nothing was applied");
    assert_eq!(
        lab.delivered(&[9, 10], 5),
        [0, 5],
        "generation 1 still runs: port 9 denied, port 10 (the control) passes"
    );
    // A misspelt key deeper (a port range) and at the top of the spec are refused the same way.
    let deeper =
        spec_with_rule(r#"{"action":"deny","protocol":"udp","destinationPorts":[{"frm":10}]}"#);
    let e = lab.apply("lab", "t", 2, &deeper).expect_err("deeper");
    assert!(
        e.message().contains(
            "spec.functions[0].firewall.rules[0].destinationPorts[0].frm: unknown field `frm`; did you mean `from`?"
        ),
        "{}",
        e.message()
    );
    let top = deny_udp(10).replacen("\"functions\"", "\"classifer\":{},\"functions\"", 1);
    let e = lab.apply("lab", "t", 2, &top).expect_err("top");
    assert!(
        e.message()
            .contains("spec.classifer: unknown field `classifer`; did you mean `classifier`?"),
        "{}",
        e.message()
    );
    let e = lab
        .apply("lab", "t", 2, "{\"functions\": [")
        .expect_err("not JSON");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("spec_json: not JSON"),
        "{}",
        e.message()
    );
    // The same rule spelt right is applied: port 10 denied, port 9 passes (the refusals above were not
    // refusals of everything).
    assert!(
        lab.apply("lab", "t", 2, &deny_udp(10))
            .expect("valid")
            .changed
    );
    assert_eq!(lab.delivered(&[9, 10], 5), [5, 0]);
}

/// Where the workspace's binaries are: next to this test's `deps/` directory.
fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build -p {name}` first (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// The `# expect:` and `# crd:` header lines of an example.
fn header<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} header"))
}

/// The first problem a door's output gives for `file`: its lines are `FILE[ (document N)]: path: message`
/// (vnfctl also says which documents are valid or of another kind: those are not problems).
fn first_message(output: &str, file: &Path) -> Option<String> {
    let prefix = file.display().to_string();
    output
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let rest = match rest.strip_prefix(" (document ") {
                Some(r) => r.split_once(')')?.1,
                None => rest,
            };
            rest.strip_prefix(": ")
        })
        .find(|m| !m.starts_with("VNFChain ") && !m.starts_with("skipped kind "))
        .map(str::to_owned)
}

/// The operator's door: the object as the API server sends it, read by the operator's watch with the reader
/// of `vnfctl validate` (operator/src/read.rs, `ChainObject::read`, which is `crds::manifest::read_object`;
/// `operator/src/read.rs` tests every example through the operator's own type, as the API server serves it).
fn operator_door(document: &serde_json::Value) -> Result<(), String> {
    crds::manifest::read_object(document.clone())
        .map(|_| ())
        .map_err(|e| e.0[0].to_string())
}

/// Files the gRPC door cannot see the problem of: its request carries a spec and a ChainRef, no apiVersion
/// and no kind (both are the protocol's, not the caller's).
const GRPC_EXEMPT: [&str; 2] = ["35-wrong-api-version.yaml", "48-misspelt-kind.yaml"];
/// Files whose problem never reaches the operator: unknown fields (layer `apiserver`: pruned, or refused under
/// strict field validation) and another kind or version (the operator watches only VNFChain v1alpha1).
const OPERATOR_EXEMPT: [&str; 4] = [
    "05-unknown-field.yaml",
    "35-wrong-api-version.yaml",
    "48-misspelt-kind.yaml",
    "49-unknown-field-near-miss.yaml",
];

#[test]
fn every_invalid_example_is_refused_by_every_door_with_the_same_first_message() {
    if !common::privileged() {
        return;
    }
    let vnfctl = workspace_bin("vnfctl");
    let mut lab = Lab::start("dr2");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/invalid")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "{} examples", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        let text = std::fs::read_to_string(file).expect("read");
        let expect = header(&text, "# expect:");
        let layer = header(&text, "# crd:");
        let mut doors: Vec<(&str, Option<String>)> = Vec::new();

        let out = Command::new(&vnfctl)
            .arg("validate")
            .arg(file)
            .output()
            .expect("vnfctl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "vnfctl validate accepted {name}");
        // the reference: what `vnfctl validate` says first; the problem the file's header names is among
        // what it says
        let named = stdout.lines().any(|l| l.contains(&format!(": {expect}")));
        let Some(first) = first_message(&stdout, file).filter(|_| named) else {
            failures.push(format!(
                "{name}: vnfctl validate says {stdout:?}, expected {expect:?}"
            ));
            continue;
        };

        // in the test's namespace: were a file accepted, nothing of the host's would be touched
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.namespaces.0[0],
                daemon::bin(),
                "--config",
            ])
            .arg(file)
            .args(["--metrics-listen", "127.0.0.1:9191"])
            .output()
            .expect("cnf-dataplane");
        assert_eq!(out.status.code(), Some(64), "cnf-dataplane --config {name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        doors.push(("cnf-dataplane --config", first_message(&stderr, file)));

        let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("YAML");
        let document = documents
            .into_iter()
            .find(|d| !d.is_null())
            .expect("a document");
        if !GRPC_EXEMPT.contains(&name) {
            let meta = &document["metadata"];
            let got = lab.apply(
                meta["namespace"].as_str().unwrap_or("lab"),
                meta["name"].as_str().unwrap_or_default(),
                2,
                &document["spec"].to_string(),
            );
            doors.push((
                "gRPC ApplyChain",
                match got {
                    Err(e) if e.code() == tonic::Code::InvalidArgument => {
                        e.message().lines().next().map(str::to_owned)
                    }
                    other => Some(format!("not refused as invalid: {other:?}")),
                },
            ));
        }
        if !OPERATOR_EXEMPT.contains(&name) {
            doors.push(("operator", operator_door(&document).err()));
        }
        for (door, got) in doors {
            if got.as_deref() != Some(first.as_str()) {
                failures.push(format!(
                    "{name} ({layer}) {door}: {got:?}\n    expected {first:?}"
                ));
            }
        }
    }
    assert_eq!(lab.generation(), 1, "no invalid example was applied");
    assert_eq!(
        lab.delivered(&[9, 10], 3),
        [0, 3],
        "generation 1 still runs"
    );
    assert!(
        failures.is_empty(),
        "doors disagree:\n{}",
        failures.join("\n")
    );
}

fn refused(
    r: Result<dataplane_api::ApplyChainResponse, tonic::Status>,
    code: tonic::Code,
) -> String {
    match r {
        Err(e) if e.code() == code => e.message().to_owned(),
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

#[test]
fn generations_are_positive_one_spec_each_never_stale_and_end_at_detach() {
    if !common::privileged() {
        return;
    }
    let mut lab = Lab::start("dr3");
    use tonic::Code::{FailedPrecondition, InvalidArgument};
    for bad in [0, -1, i64::MIN] {
        let m = refused(lab.apply("lab", "t", bad, &deny_udp(10)), InvalidArgument);
        assert!(m.contains("generation: must be a positive"), "{m}");
    }
    // generation 1 runs CHAIN (deny 9): the same spec again is an idempotent OK, another spec is refused
    assert!(
        !lab.apply("lab", "t", 1, &deny_udp(9))
            .expect("replay")
            .changed
    );
    let m = refused(lab.apply("lab", "t", 1, &deny_udp(10)), FailedPrecondition);
    assert!(
        m.contains("generation 1 is already applied with another spec"),
        "{m}"
    );
    assert_eq!(lab.generation(), 1);
    assert_eq!(
        lab.delivered(&[9, 10], 4),
        [0, 4],
        "generation 1 still runs"
    );

    // The largest generations are ordinary ones: one below the top does not stop the top from coming.
    assert!(
        lab.apply("lab", "t", i64::MAX - 1, &deny_udp(10))
            .expect("MAX-1")
            .changed
    );
    assert_eq!(lab.delivered(&[9, 10], 4), [4, 0]);
    assert!(
        lab.apply("lab", "t", i64::MAX, &deny_udp(9))
            .expect("MAX")
            .changed
    );
    assert!(
        !lab.apply("lab", "t", i64::MAX, &deny_udp(9))
            .expect("replay of MAX")
            .changed
    );
    // No later generation of this object can exist (the API server cannot count past int64): a changed
    // spec at i64::MAX is refused like at any other generation, an older one is stale.
    refused(
        lab.apply("lab", "t", i64::MAX, &deny_udp(10)),
        FailedPrecondition,
    );
    let m = refused(lab.apply("lab", "t", 5, &deny_udp(10)), FailedPrecondition);
    assert!(m.contains("older than the applied generation"), "{m}");
    assert_eq!(lab.generation(), i64::MAX);
    assert_eq!(
        lab.delivered(&[9, 10], 4),
        [0, 4],
        "generation i64::MAX runs"
    );

    // After Detach nothing is attached again: ApplyChain says why.
    let client = &mut lab.client;
    let status = lab
        .rt
        .block_on(client.detach(DetachRequest {}))
        .expect("detach")
        .into_inner();
    assert!(status.attachments.is_empty());
    for generation in [i64::MAX, 1] {
        let m = refused(
            lab.apply("lab", "t", generation, &deny_udp(9)),
            FailedPrecondition,
        );
        assert!(m.contains("detached"), "{m}");
    }
    assert!(
        !common::xdp_on(&lab.namespaces.0[0], "cnf0"),
        "still detached"
    );
    assert_eq!(
        lab.delivered(&[9, 10], 4),
        [4, 4],
        "nothing filters after Detach"
    );
}

/// Issue 12: the operator rolls a replica back by re-sending the known-good generation's number and spec. The
/// daemon returns to a generation it applied itself with the same spec (the spec's JSON in another key order
/// and with a default spelt out reads as the same spec), and to nothing else.
#[test]
fn a_rollback_returns_to_a_generation_this_daemon_applied_with_its_spec() {
    if !common::privileged() {
        return;
    }
    let mut lab = Lab::start("dr4");
    use tonic::Code::FailedPrecondition;
    assert!(lab.apply("lab", "t", 2, &deny_udp(10)).expect("2").changed);
    assert_eq!(lab.delivered(&[9, 10], 4), [4, 0], "generation 2 runs");

    // generation 1 was the daemon's start (CHAIN from --config): back to it, as the operator sends it
    let back = serde_json::to_string(
        &crds::manifest::parse_single_chain(&CHAIN)
            .expect("chain")
            .spec,
    )
    .expect("json");
    let r = lab.apply("lab", "t", 1, &back).expect("rollback to 1");
    assert!(r.changed, "{r:?}");
    assert_eq!(r.applied_generation, 1);
    assert_eq!(lab.generation(), 1);
    assert_eq!(
        lab.delivered(&[9, 10], 4),
        [0, 4],
        "generation 1 runs again: port 9 denied, port 10 (the control) passes"
    );
    // the same generation 1 written differently (keys reordered, the default hook spelt out) is the same
    let reordered = r#"{"interfaces":{"ingress":"cnf0"},"dataplane":{"hook":"auto"},"functions":[{"type":"firewall","name":"fw","firewall":{"rules":[{"protocol":"udp","action":"deny","destinationPorts":[{"from":9}]}],"defaultAction":"allow"}},{"name":"mon","type":"monitor","monitor":{}}]}"#;
    assert!(
        !lab.apply("lab", "t", 1, reordered)
            .expect("the running spec again")
            .changed
    );

    // back is only to what was applied here, with its spec
    let m = refused(lab.apply("lab", "t", 1, &deny_udp(11)), FailedPrecondition);
    assert!(
        m.contains("generation 1 is already applied with another spec"),
        "{m}"
    );
    let m = refused(lab.apply("lab", "t", 2, &deny_udp(11)), FailedPrecondition);
    assert!(
        m.contains("generation 2 is already applied with another spec"),
        "{m}"
    );
    assert!(lab.apply("lab", "t", 4, &deny_udp(11)).expect("4").changed);
    // 3 never ran here: stale, even below the generation it would return from
    let m = refused(lab.apply("lab", "t", 3, &deny_udp(12)), FailedPrecondition);
    assert!(m.contains("older than the applied generation 4"), "{m}");
    // forward again after a return, and back to 2 (applied here) from there
    assert!(
        lab.apply("lab", "t", 2, &deny_udp(10))
            .expect("back to 2")
            .changed
    );
    assert_eq!(lab.generation(), 2);
    assert_eq!(
        lab.delivered(&[9, 10, 11], 4),
        [4, 0, 4],
        "generation 2 runs"
    );
    let m = refused(lab.apply("lab", "t", 3, &deny_udp(12)), FailedPrecondition);
    assert!(m.contains("older than the applied generation 4"), "{m}");
    assert!(lab.apply("lab", "t", 5, &deny_udp(12)).expect("5").changed);
    assert_eq!(lab.delivered(&[9, 12], 4), [4, 0], "generation 5 runs");
}
