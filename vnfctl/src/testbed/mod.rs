//! The laptop testbed: a VNFChain brought up in network namespaces and veth pairs on one machine.
//!
//! [`Testbed::up`] plans the addresses from the manifest (see [`plan`] for the rules), creates a bridge
//! namespace, the CNF namespace and one namespace per client and server, joins them with veth pairs, sets
//! addresses, routes and permanent neighbours, optionally shapes the clients' links, starts `cnf-dataplane` in
//! the CNF namespace (gRPC on a 0600 Unix socket, `/metrics` on 127.0.0.1 inside the namespace) and waits until
//! the chain is attached. Everything it creates is recorded, step by step, in a state file
//! (`/run/buildvnf/testbed/NAME.json`); a failure or an interrupt half-way removes exactly that, and so do
//! [`Testbed::down`], dropping the [`Testbed`], and [`down`] by name.

pub mod flows;
pub mod metrics;
pub mod plan;
pub mod secrets;
pub mod shape;
pub mod sidecar;
pub mod state;
pub mod traffic;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crds::VNFChain;
use netkit::{Netlink, Route, VethEnd};
use pktgen::netns::{NetnsError, run};
use thiserror::Error;

pub use plan::{CnfInterface, EndpointPlan, Plan, Role, Service};
pub use shape::Shape;
pub use state::{STATE_DIR, State};

/// Testbed errors. Each names what failed and, for bad input, the field or flag.
#[derive(Debug, Error)]
pub enum TestbedError {
    /// Not running as root.
    #[error(
        "the testbed needs root (it creates network namespaces and loads eBPF); run it with sudo or as root"
    )]
    NotRoot,
    /// A bad testbed name.
    #[error("testbed name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The manifest does not validate.
    #[error("the manifest is invalid:\n{}", indented(.0))]
    Manifest(#[source] crds::ValidationErrors),
    /// The chain could not be written back as YAML (for the data plane's config).
    #[error("the manifest is invalid:\n{0}")]
    ManifestYaml(#[source] crds::manifest::ManifestError),
    /// The manifest cannot be laid out as a testbed.
    #[error("{field}: {message}")]
    Plan {
        /// Field path in the manifest.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A name the testbed needs exists and is not ours.
    #[error(
        "{what} {name:?} already exists and is not part of testbed {testbed:?}; remove it or pick another name with --name"
    )]
    NameTaken {
        /// What kind of object.
        what: String,
        /// Its name.
        name: String,
        /// The testbed.
        testbed: String,
    },
    /// A testbed of that name is up with a different manifest or options.
    #[error(
        "testbed {0:?} is already up with a different manifest or options; take it down first (vnfctl testbed down {0})"
    )]
    Busy(String),
    /// Bad `--shape`.
    #[error("--shape: {0}")]
    Shape(String),
    /// Link shaping is not possible on this kernel.
    #[error("--shape: {0}")]
    ShapeUnsupported(String),
    /// The data plane binary is missing.
    #[error("--dataplane-bin: {0}")]
    DataplaneBinary(#[source] BinaryNotFound),
    /// The pktgen binary (the servers' listeners) is missing.
    #[error("--pktgen-bin: {0}")]
    PktgenBinary(#[source] BinaryNotFound),
    /// A MAC address of the plan does not parse.
    #[error(transparent)]
    Mac(#[from] netkit::mac::BadMac),
    /// A server's listeners did not start.
    #[error("listeners in {netns}: {message}")]
    Listeners {
        /// The server's namespace.
        netns: String,
        /// What happened.
        message: String,
    },
    /// The data plane did not start or attach.
    #[error("cnf-dataplane: {message}{}", if log.is_empty() { String::new() } else { format!("\n--- its log ---\n{log}") })]
    Dataplane {
        /// What happened.
        message: String,
        /// The end of its log.
        log: String,
    },
    /// Interrupted (SIGINT/SIGTERM) while bringing the testbed up; everything created was removed.
    #[error("interrupted; everything created so far was removed")]
    Interrupted,
    /// A state could not be written as JSON.
    #[error("state file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// A state file that does not read as one.
    #[error("state file {path}: not a testbed state file: {source}")]
    NotState {
        /// The file.
        path: PathBuf,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// Teardown could not remove something.
    #[error("teardown of testbed {name:?} left: {}", problems.join("; "))]
    Teardown {
        /// The testbed.
        name: String,
        /// What is left.
        problems: Vec<String>,
    },
    /// A command failed.
    #[error(transparent)]
    Command(#[from] NetnsError),
    /// A recorded metrics address does not parse.
    #[error("bad metrics address {addr}: {source}")]
    MetricsAddr {
        /// The address as recorded.
        addr: String,
        /// What is wrong.
        #[source]
        source: std::net::AddrParseError,
    },
    /// A traffic thread, or writing a traffic run's results, failed.
    #[error("{what}: {source}")]
    Traffic {
        /// Which thread or step.
        what: String,
        /// What failed.
        #[source]
        source: traffic::TrafficError,
    },
    /// A kernel parameter could not be set in a namespace.
    #[error("in {netns}: {source}")]
    Sysctl {
        /// The namespace.
        netns: String,
        /// What failed.
        #[source]
        source: netkit::sysctl::SysctlError,
    },
    /// Transmit checksum offload could not be turned off on a link.
    #[error("turning tx checksum offload off on {dev} in {netns}: {source}")]
    Offload {
        /// The link.
        dev: String,
        /// Its namespace.
        netns: String,
        /// The ioctl's error.
        #[source]
        source: netkit::ethtool::EthtoolError,
    },
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Options of [`Testbed::up`].
#[derive(Clone, Debug)]
pub struct TestbedOptions {
    /// Testbed name (namespaces are `bvnf-NAME-...`); default: the chain's `metadata.name`.
    pub name: Option<String>,
    /// Start cnf-dataplane in the CNF namespace (false: the CNF namespace only forwards, for kernel peers such
    /// as nftables, IPVS or tc that the caller configures itself).
    pub start_dataplane: bool,
    /// The cnf-dataplane binary; default: `cnf-dataplane` next to the running executable (or its parent
    /// directory, for test binaries in `deps/`), else on `PATH`.
    pub dataplane_bin: Option<PathBuf>,
    /// The pktgen binary whose `serve` runs every server's listeners; default: like `dataplane_bin`.
    pub pktgen_bin: Option<PathBuf>,
    /// Override the manifest's `spec.dataplane.hook` (e.g. XDP or TC).
    pub hook: Option<crds::Hook>,
    /// Shape every client's link (both directions).
    pub shape: Option<Shape>,
    /// Where state files go.
    pub state_dir: PathBuf,
    /// Port of the data plane's metrics endpoint (127.0.0.1 inside the CNF namespace).
    pub metrics_port: u16,
    /// How long to wait for the chain to be attached.
    pub attach_timeout: Duration,
    /// The keys of user-space functions (the Secrets of the manifest's file, see [`secrets`]).
    pub secrets: secrets::Secrets,
}

impl Default for TestbedOptions {
    fn default() -> Self {
        Self {
            name: None,
            start_dataplane: true,
            dataplane_bin: None,
            pktgen_bin: None,
            hook: None,
            shape: None,
            state_dir: PathBuf::from(STATE_DIR),
            metrics_port: 9090,
            attach_timeout: Duration::from_secs(30),
            secrets: secrets::Secrets::default(),
        }
    }
}

impl TestbedOptions {
    /// The part of the options that changes what is built (compared by idempotent `up`).
    fn key(&self) -> String {
        format!(
            "dataplane={} hook={:?} shape={} metrics={}",
            self.start_dataplane,
            self.hook,
            self.shape
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            self.metrics_port
        )
    }
}

pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag that [`Testbed::up`] checks between steps (it then removes what it
/// created and returns [`TestbedError::Interrupted`]) instead of killing the process half-way. For commands.
pub fn install_interrupt_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Whether SIGINT/SIGTERM arrived since [`install_interrupt_handler`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Every problem on its own line, indented.
fn indented(errors: &crds::ValidationErrors) -> String {
    errors
        .0
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestbedError {
    let context = context.into();
    move |source| TestbedError::Io { context, source }
}

/// A testbed that is up. Dropping it tears it down unless [`Testbed::keep`] was called.
#[derive(Debug)]
pub struct Testbed {
    state: State,
    dir: PathBuf,
    child: Option<Child>,
    /// The sidecars of a sidecar-mode testbed ([`sidecar`]).
    pod_children: Vec<Child>,
    armed: bool,
    already_up: bool,
}

/// The outcome of [`down`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownOutcome {
    /// It was up and is now removed.
    Removed,
    /// There was no such testbed.
    NotFound,
}

impl Testbed {
    /// Brings `chain` up as a testbed. An identical testbed that is already up is adopted (see
    /// [`Testbed::was_already_up`]; the returned value owns it either way: dropping it tears it down unless
    /// [`Testbed::keep`] is called); one with the same name but another manifest or options is refused.
    pub fn up(chain: &VNFChain, opts: &TestbedOptions) -> Result<Testbed, TestbedError> {
        if !is_root() {
            return Err(TestbedError::NotRoot);
        }
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => chain.metadata.name.clone().unwrap_or_default(),
        };
        plan::check_name(&name)?;
        crds::validate(chain).map_err(TestbedError::Manifest)?;
        let mut chain = chain.clone();
        if let Some(h) = opts.hook {
            chain.spec.dataplane.hook = h;
        }
        let manifest = crds::manifest::to_yaml(&chain).map_err(TestbedError::ManifestYaml)?;
        let plan = plan::plan(&chain, &name)?;
        opts.secrets.check(&chain)?;
        if let Some(s) = &opts.shape {
            check_shape_support(s)?;
        }
        let bin = if opts.start_dataplane {
            Some(dataplane_binary(opts.dataplane_bin.as_deref())?)
        } else {
            None
        };
        let pktgen = find_binary("pktgen", opts.pktgen_bin.as_deref())
            .map_err(TestbedError::PktgenBinary)?;
        let dir = opts.state_dir.clone();

        // An existing testbed of this name.
        let mut ours: Vec<String> = Vec::new();
        if let Some(old) = State::load(&dir, &name)? {
            if old.complete
                && old.manifest == manifest
                && old.options_key == opts.key()
                && old.alive()
            {
                return Ok(Testbed {
                    state: old,
                    dir,
                    child: None,
                    pod_children: Vec::new(),
                    armed: true,
                    already_up: true,
                });
            }
            if old.complete && old.alive() {
                return Err(TestbedError::Busy(name));
            }
            // Left over from an interrupted or crashed run: remove it first.
            let problems = state::teardown(&old, &dir);
            if !problems.is_empty() {
                return Err(TestbedError::Teardown { name, problems });
            }
            ours.extend(old.namespaces);
        }
        let existing = state::existing_namespaces()?;
        for ns in plan.namespaces() {
            if existing.contains(&ns) && !ours.contains(&ns) {
                return Err(TestbedError::NameTaken {
                    what: "network namespace".into(),
                    name: ns,
                    testbed: name,
                });
            }
        }

        let mut tb = Testbed {
            state: State {
                name: name.clone(),
                manifest,
                options_key: opts.key(),
                plan,
                namespaces: Vec::new(),
                links: Vec::new(),
                processes: Vec::new(),
                pin_dirs: Vec::new(),
                temp_dirs: Vec::new(),
                metrics: None,
                grpc_socket: None,
                dataplane_log: None,
                attached: Vec::new(),
                sidecars: Vec::new(),
                complete: false,
            },
            dir,
            child: None,
            pod_children: Vec::new(),
            armed: true,
            already_up: false,
        };
        tb.state.save(&tb.dir)?;
        // On error, `tb` is dropped and removes what the state lists. A command killed by the same Ctrl-C
        // counts as the interrupt.
        if let Err(e) = tb.build(opts, bin.as_deref(), &pktgen) {
            return Err(if interrupted() {
                TestbedError::Interrupted
            } else {
                e
            });
        }
        tb.state.complete = true;
        tb.state.save(&tb.dir)?;
        Ok(tb)
    }

    fn step(&mut self) -> Result<(), TestbedError> {
        if interrupted() {
            return Err(TestbedError::Interrupted);
        }
        self.state.save(&self.dir)
    }

    /// Builds what the plan lays out, step by step, recording each step in the state.
    fn build(
        &mut self,
        opts: &TestbedOptions,
        bin: Option<&Path>,
        pktgen: &Path,
    ) -> Result<(), TestbedError> {
        let plan = self.state.plan.clone();
        let tmp = self.dir.join(format!("{}.d", self.state.name));
        self.state.temp_dirs.push(tmp.clone());
        self.step()?;
        std::fs::create_dir_all(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        self.add_namespaces(&plan)?;
        self.add_cnf_interfaces(&plan)?;
        for e in &plan.endpoints {
            self.add_endpoint(&plan, e, opts.shape.as_ref())?;
        }
        // Every server's listeners, then the data plane.
        for e in plan.endpoints.iter().filter(|e| !e.ports.is_empty()) {
            self.start_listeners(pktgen, &tmp, e)?;
        }
        match bin {
            Some(bin) if !plan.sidecar_pods.is_empty() => self.start_sidecars(bin, &tmp, opts)?,
            Some(bin) => self.start_dataplane(bin, &tmp, opts)?,
            None => {}
        }
        Ok(())
    }

    /// Every namespace of the plan (loopback up) and the bridges in the bridge namespace.
    fn add_namespaces(&mut self, plan: &Plan) -> Result<(), TestbedError> {
        for ns in plan.namespaces() {
            netkit::netns::add(&ns).map_err(NetnsError::from)?;
            self.state.namespaces.push(ns.clone());
            self.step()?;
            nl(&ns)?.set_up("lo", true).map_err(NetnsError::from)?;
        }
        let br = &plan.bridge_netns;
        for b in plan.cnf_interfaces.iter().map(|i| &i.bridge) {
            let mut n = nl(br)?;
            n.add_bridge(b).map_err(NetnsError::from)?;
            n.set_up(b, true).map_err(NetnsError::from)?;
        }
        Ok(())
    }

    /// The CNF's interfaces with their addresses, and the CNF namespace forwarding (no redirects, no
    /// reverse-path filter).
    fn add_cnf_interfaces(&mut self, plan: &Plan) -> Result<(), TestbedError> {
        let (br, cnf) = (&plan.bridge_netns, &plan.cnf_netns);
        for i in &plan.cnf_interfaces {
            self.veth(br, &i.bridge_port, &i.bridge, cnf, &i.name, &i.mac)?;
            for a in &i.addrs {
                add_addr(cnf, &i.name, a)?;
            }
            nl(cnf)?.set_up(&i.name, true).map_err(NetnsError::from)?;
        }
        let mut sysctls: Vec<(String, &str)> = [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.default.send_redirects", "0"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for i in &plan.cnf_interfaces {
            sysctls.push((format!("net/ipv4/conf/{}/send_redirects", i.name), "0"));
            sysctls.push((format!("net/ipv4/conf/{}/rp_filter", i.name), "0"));
        }
        sysctl_in(cnf, &sysctls)?;
        self.step()
    }

    /// One client or server: its veth to the bridge of the CNF interface it faces, addresses, no ICMP
    /// redirects, default routes and permanent neighbours both ways, and (clients) the shaped link.
    fn add_endpoint(
        &mut self,
        plan: &Plan,
        e: &EndpointPlan,
        shape: Option<&Shape>,
    ) -> Result<(), TestbedError> {
        let (br, cnf) = (&plan.bridge_netns, &plan.cnf_netns);
        let cnf_if = plan
            .cnf_interfaces
            .iter()
            .find(|i| i.bridge == e.bridge_name())
            .unwrap_or(&plan.cnf_interfaces[0]);
        self.veth(
            br,
            &e.bridge_port,
            &cnf_if.bridge,
            &e.netns,
            &e.interface,
            &e.mac,
        )?;
        if let Some(a) = e.ipv4 {
            add_addr(&e.netns, &e.interface, &ipnet::IpNet::V4(a))?;
        }
        if let Some(a) = e.ipv6 {
            add_addr(&e.netns, &e.interface, &ipnet::IpNet::V6(a))?;
        }
        // No ICMP redirects: in a one-armed layout the CNF forwards out of the interface a packet came in
        // on, and Linux then tells an IPv6 sender (IPv4 has send_redirects off on the CNF) that the
        // destination is on-link: the client would go straight to the server, around the chain.
        sysctl_in(
            &e.netns,
            &[
                ("net.ipv6.conf.all.accept_redirects".to_string(), "0"),
                ("net.ipv6.conf.default.accept_redirects".to_string(), "0"),
                (
                    format!("net/ipv6/conf/{}/accept_redirects", e.interface),
                    "0",
                ),
                ("net.ipv4.conf.all.accept_redirects".to_string(), "0"),
            ],
        )?;
        nl(&e.netns)?
            .set_up(&e.interface, true)
            .map_err(NetnsError::from)?;
        let gws: Vec<IpAddr> = [e.gateway4.map(IpAddr::V4), e.gateway6.map(IpAddr::V6)]
            .into_iter()
            .flatten()
            .collect();
        for gw in gws {
            neigh(&e.netns, &e.interface, gw, &cnf_if.mac)?;
            nl(&e.netns)?
                .add_route(&Route::default_via(gw))
                .map_err(NetnsError::from)?;
        }
        for a in [
            e.ipv4.map(|n| IpAddr::V4(n.addr())),
            e.ipv6.map(|n| IpAddr::V6(n.addr())),
        ]
        .into_iter()
        .flatten()
        {
            neigh(cnf, &cnf_if.name, a, &e.mac)?;
        }
        if let Some(s) = shape
            && matches!(e.role, Role::Client | Role::DeniedClient)
        {
            shape_link(&e.netns, &e.interface, s)?;
            shape_link(br, &e.bridge_port, s)?;
        }
        self.step()
    }

    /// Starts `pktgen serve` in a server's namespace (UDP echo and HTTP on each of its ports) and waits until it
    /// says every socket is bound.
    fn start_listeners(
        &mut self,
        pktgen: &Path,
        tmp: &Path,
        e: &EndpointPlan,
    ) -> Result<(), TestbedError> {
        let log_path = tmp.join(format!("{}.log", e.bridge_port));
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("create {}", log_path.display())))?;
        let mut cmd = Command::new(pktgen);
        cmd.arg("serve");
        if e.ipv4.is_some() {
            cmd.arg("--ipv4");
        }
        if e.ipv6.is_some() {
            cmd.arg("--ipv6");
        }
        for p in &e.ports {
            cmd.args(["--udp", &p.to_string(), "--tcp", &p.to_string()]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0);
        let mut child = netkit::netns::spawn(&e.netns, &mut cmd).map_err(NetnsError::from)?;
        let pid = child.id();
        self.state.processes.push(state::Proc {
            pid,
            start_ticks: state::start_ticks(pid).unwrap_or_default(),
            what: format!("listeners in {}", e.netns),
        });
        self.step()?;
        let out = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(o) = out {
                let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(o), &mut line);
            }
            let _ = tx.send(line);
        });
        let failed = |message: String| TestbedError::Listeners {
            netns: e.netns.clone(),
            message: format!(
                "{message}\n--- its log ---\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ),
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) if l.trim() == "ready" => Ok(()),
            Ok(_) => Err(failed("exited before listening".into())),
            Err(_) => Err(failed("not listening within 10 s".into())),
        }
    }

    /// Creates a veth pair directly inside two namespaces (nothing appears in the caller's namespace), puts
    /// `port` on `bridge`, and turns tx checksum offload off on `dev` (UDP after an XDP redirect would
    /// otherwise arrive with partial checksums).
    fn veth(
        &mut self,
        br: &str,
        port: &str,
        bridge: &str,
        ns: &str,
        dev: &str,
        mac: &str,
    ) -> Result<(), TestbedError> {
        let mac = parse_mac(mac)?;
        Netlink::open()
            .and_then(|mut n| {
                n.add_veth(VethEnd::new(port).ns(br), VethEnd::new(dev).mac(mac).ns(ns))
            })
            .map_err(NetnsError::from)?;
        self.state.links.push(format!("{br}/{port}"));
        self.state.links.push(format!("{ns}/{dev}"));
        let mut n = nl(br)?;
        n.set_master(port, bridge).map_err(NetnsError::from)?;
        n.set_up(port, true).map_err(NetnsError::from)?;
        netkit::ns::run_in(ns, || netkit::ethtool::set_tx_checksum(dev, false))
            .map_err(|e| NetnsError::from(netkit::netns::NetnsError::from(e)))?
            .map_err(|source| TestbedError::Offload {
                dev: dev.to_string(),
                netns: ns.to_string(),
                source,
            })?;
        self.step()
    }

    fn start_dataplane(
        &mut self,
        bin: &Path,
        tmp: &Path,
        opts: &TestbedOptions,
    ) -> Result<(), TestbedError> {
        let cnf = self.state.plan.cnf_netns.clone();
        let s = self.spawn_dataplane(bin, tmp, opts, &cnf, "dataplane")?;
        self.child = Some(s.child);
        let at = Started {
            sock: s.sock,
            log: s.log,
            metrics: s.metrics,
        };
        self.state.grpc_socket = Some(at.sock.clone());
        self.state.dataplane_log = Some(at.log.clone());
        self.state.metrics = Some(at.metrics.to_string());
        self.step()?;
        let want: Vec<String> = self
            .state
            .plan
            .cnf_interfaces
            .iter()
            .filter(|i| i.attached)
            .map(|i| i.name.clone())
            .collect();
        self.state.attached =
            wait_attached(self.child.as_mut(), &cnf, &at, &want, opts.attach_timeout)?;
        self.step()
    }

    /// Starts cnf-dataplane in `netns` with the testbed's manifest (files in `tmp` named after `tag`) and
    /// records the process in the state.
    fn spawn_dataplane(
        &mut self,
        bin: &Path,
        tmp: &Path,
        opts: &TestbedOptions,
        netns: &str,
        tag: &str,
    ) -> Result<Spawned, TestbedError> {
        let cfg = tmp.join("chain.yaml");
        std::fs::write(&cfg, &self.state.manifest)
            .map_err(io(format!("write {}", cfg.display())))?;
        let sock = tmp.join(format!("{tag}.sock"));
        let log_path = tmp.join(format!("{tag}.log"));
        let secrets_dir = tmp.join(format!("{tag}-secrets"));
        opts.secrets.write(&secrets_dir)?;
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("create {}", log_path.display())))?;
        let log2 = log
            .try_clone()
            .map_err(io(format!("open {}", log_path.display())))?;
        let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, opts.metrics_port));
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(&cfg)
            .arg("--grpc-socket")
            .arg(&sock)
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .arg("--secrets-dir")
            .arg(&secrets_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // its own process group: a Ctrl-C at the terminal reaches vnfctl, which stops it in order
            .process_group(0);
        let child = netkit::netns::spawn(netns, &mut cmd).map_err(NetnsError::from)?;
        let pid = child.id();
        // the pid is the data plane's (no wrapper process); its start time pins it down.
        let start_ticks = state::start_ticks(pid).unwrap_or_default();
        self.state.processes.push(state::Proc {
            pid,
            start_ticks,
            what: format!("cnf-dataplane in {netns}"),
        });
        Ok(Spawned {
            child,
            sock,
            log: log_path,
            metrics,
        })
    }

    /// Opens testbed `name` that is up (from its state file) without owning it: dropping the value leaves the
    /// testbed up. `None` when there is no such testbed.
    pub fn open(name: &str, state_dir: &Path) -> Result<Option<Testbed>, TestbedError> {
        plan::check_name(name)?;
        Ok(State::load(state_dir, name)?.map(|state| Testbed {
            state,
            dir: state_dir.to_path_buf(),
            child: None,
            pod_children: Vec::new(),
            armed: false,
            already_up: true,
        }))
    }

    /// The testbed's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Whether [`Testbed::up`] found this testbed already up (and built nothing).
    pub fn was_already_up(&self) -> bool {
        self.already_up
    }

    /// The plan: every namespace, address and MAC.
    pub fn plan(&self) -> &Plan {
        &self.state.plan
    }

    /// The state as recorded in the state file.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Path of the state file.
    pub fn state_path(&self) -> PathBuf {
        state::path(&self.dir, &self.state.name)
    }

    /// The CNF namespace.
    pub fn cnf_netns(&self) -> &str {
        &self.state.plan.cnf_netns
    }

    /// The CNF's interfaces (ingress first).
    pub fn cnf_interfaces(&self) -> &[CnfInterface] {
        &self.state.plan.cnf_interfaces
    }

    /// The bridge namespace.
    pub fn bridge_netns(&self) -> &str {
        &self.state.plan.bridge_netns
    }

    /// All clients (allowed first, then a denied one if the manifest names one).
    pub fn clients(&self) -> Vec<&EndpointPlan> {
        self.state
            .plan
            .endpoints
            .iter()
            .filter(|e| matches!(e.role, Role::Client | Role::DeniedClient))
            .collect()
    }

    /// The client the chain allows.
    pub fn client(&self) -> &EndpointPlan {
        // plan() always puts the allowed client first
        &self.state.plan.endpoints[0]
    }

    /// The client a firewall rule denies, if the manifest has one.
    pub fn denied_client(&self) -> Option<&EndpointPlan> {
        self.state
            .plan
            .endpoints
            .iter()
            .find(|e| e.role == Role::DeniedClient)
    }

    /// All servers (backends and DNAT targets), in manifest order.
    pub fn servers(&self) -> Vec<&EndpointPlan> {
        self.state
            .plan
            .endpoints
            .iter()
            .filter(|e| e.role == Role::Server)
            .collect()
    }

    /// The server holding `addr`.
    pub fn server(&self, addr: IpAddr) -> Option<&EndpointPlan> {
        self.servers().into_iter().find(|e| e.has_addr(addr))
    }

    /// The services the chain offers (load-balancer VIPs, DNAT destinations), with their targets.
    pub fn services(&self) -> &[Service] {
        &self.state.plan.services
    }

    /// The data plane's metrics endpoint (reachable inside [`Testbed::cnf_netns`]), when it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.state.metrics.as_deref().and_then(|m| m.parse().ok())
    }

    /// The data plane's gRPC Unix socket, when it runs.
    pub fn grpc_socket(&self) -> Option<&Path> {
        self.state.grpc_socket.as_deref()
    }

    /// The data plane's pid, when it runs.
    pub fn dataplane_pid(&self) -> Option<u32> {
        self.state
            .processes
            .iter()
            .find(|p| p.what.starts_with("cnf-dataplane"))
            .map(|p| p.pid)
    }

    /// The sink (the server of a chain without services), if the plan has one.
    pub fn sink(&self) -> Option<&EndpointPlan> {
        self.state
            .plan
            .endpoints
            .iter()
            .find(|e| e.role == Role::Sink)
    }

    /// The flows `traffic` sends (see [`flows`]).
    pub fn flows(&self) -> &[flows::Flow] {
        &self.state.plan.flows
    }

    /// (interface, hook) of every attachment the data plane reported.
    pub fn attachments(&self) -> &[(String, String)] {
        &self.state.attached
    }

    /// The chain's function names in chain order.
    pub fn function_names(&self) -> Vec<String> {
        crds::manifest::parse_single_chain(&self.state.manifest)
            .map(|c| {
                c.spec
                    .functions
                    .iter()
                    .map(|f| f.name.as_str().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fetches the data plane's `/metrics` text.
    pub fn scrape_metrics(&self) -> Result<String, TestbedError> {
        if !self.state.sidecars.is_empty() {
            return sidecar::scrape_all(&self.state.sidecars);
        }
        let addr = self.metrics_addr().ok_or_else(|| TestbedError::Dataplane {
            message: "not running in this testbed (started without the data plane)".into(),
            log: String::new(),
        })?;
        metrics::scrape(self.cnf_netns(), addr)
    }

    /// Takes the testbed down: stops the data plane, deletes the namespaces (and with them every link), removes
    /// the temporary files and the state file.
    pub fn down(mut self) -> Result<(), TestbedError> {
        self.armed = false;
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), TestbedError> {
        let problems = state::teardown(&self.state, &self.dir);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        for mut c in self.pod_children.drain(..) {
            let _ = c.wait();
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TestbedError::Teardown {
                name: self.state.name.clone(),
                problems,
            })
        }
    }

    /// Leaves the testbed up when this value goes away (the command line's `up`); `down` by name removes it.
    pub fn keep(mut self) -> PathBuf {
        self.armed = false;
        self.child = None;
        self.pod_children.clear();
        self.state_path()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = self.teardown()
        {
            eprintln!("vnfctl testbed: {e}");
        }
    }
}

impl EndpointPlan {
    /// The IPv4 address.
    pub fn ipv4_addr(&self) -> Option<Ipv4Addr> {
        self.ipv4.map(|n| n.addr())
    }

    /// The IPv6 address.
    pub fn ipv6_addr(&self) -> Option<Ipv6Addr> {
        self.ipv6.map(|n| n.addr())
    }

    /// Whether the endpoint holds `addr`.
    pub fn has_addr(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.ipv4_addr() == Some(a),
            IpAddr::V6(a) => self.ipv6_addr() == Some(a),
        }
    }
}

/// Takes testbed `name` down by its state file (what `vnfctl testbed down NAME` does).
pub fn down(name: &str, state_dir: &Path) -> Result<DownOutcome, TestbedError> {
    plan::check_name(name)?;
    let Some(st) = State::load(state_dir, name)? else {
        return Ok(DownOutcome::NotFound);
    };
    if !is_root() {
        return Err(TestbedError::NotRoot);
    }
    let problems = state::teardown(&st, state_dir);
    if problems.is_empty() {
        Ok(DownOutcome::Removed)
    } else {
        Err(TestbedError::Teardown {
            name: name.to_string(),
            problems,
        })
    }
}

/// Sets kernel parameters in namespace `ns` (through `/proc/sys`, see [`netkit::sysctl`]).
fn sysctl_in(ns: &str, settings: &[(String, &str)]) -> Result<(), TestbedError> {
    netkit::sysctl::set_in(ns, settings).map_err(|source| TestbedError::Sysctl {
        netns: ns.to_string(),
        source,
    })
}

/// A netlink socket in namespace `ns`.
fn nl(ns: &str) -> Result<Netlink, TestbedError> {
    Ok(Netlink::open_in(ns).map_err(NetnsError::from)?)
}

fn parse_mac(mac: &str) -> Result<[u8; 6], TestbedError> {
    netkit::mac::parse(mac).map_err(TestbedError::Mac)
}

fn add_addr(ns: &str, dev: &str, a: &ipnet::IpNet) -> Result<(), TestbedError> {
    // IPv6 without duplicate address detection: the address is usable at once
    nl(ns)?
        .add_addr(dev, a.addr(), a.prefix_len(), a.addr().is_ipv6())
        .map_err(NetnsError::from)?;
    Ok(())
}

fn neigh(ns: &str, dev: &str, addr: IpAddr, mac: &str) -> Result<(), TestbedError> {
    let mac = parse_mac(mac)?;
    nl(ns)?
        .replace_neigh(dev, addr, mac)
        .map_err(NetnsError::from)?;
    Ok(())
}

/// Whether this kernel has netem (probed once per process in a throw-away namespace).
fn netem_available() -> Result<bool, TestbedError> {
    static NETEM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if let Some(v) = NETEM.get() {
        return Ok(*v);
    }
    static PROBE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let ns = format!(
        "bvnf-probe-{}-{}",
        std::process::id(),
        PROBE.fetch_add(1, Ordering::Relaxed)
    );
    netkit::netns::add(&ns).map_err(NetnsError::from)?;
    let r = nl(&ns)?
        .set_up("lo", true)
        .map_err(NetnsError::from)
        .and_then(|_| {
            run(
                "tc",
                &[
                    "-n", &ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                ],
            )
        });
    let _ = netkit::netns::del(&ns);
    Ok(*NETEM.get_or_init(|| r.is_ok()))
}

fn check_shape_support(s: &Shape) -> Result<(), TestbedError> {
    if s.rate_only() || netem_available()? {
        return Ok(());
    }
    Err(TestbedError::ShapeUnsupported(format!(
        "{s}: this kernel has no netem qdisc (sch_netem), which delay and loss need; rate alone works (token bucket)"
    )))
}

fn shape_link(ns: &str, dev: &str, s: &Shape) -> Result<(), TestbedError> {
    let netem = !s.rate_only() || netem_available()?;
    let q = s.qdisc_args(netem);
    let mut args = vec!["-n", ns, "qdisc", "add", "dev", dev, "root"];
    args.extend(q.iter().map(String::as_str));
    run("tc", &args)?;
    Ok(())
}

/// Finds the cnf-dataplane binary: the one given, else next to this executable (or one directory up, where test
/// binaries live in `deps/`), else on `PATH`.
pub fn dataplane_binary(given: Option<&Path>) -> Result<PathBuf, TestbedError> {
    find_binary("cnf-dataplane", given).map_err(TestbedError::DataplaneBinary)
}

/// Finds binary `name` of this workspace: the path given, else next to this executable (or one directory up,
/// where test binaries live in `deps/`), else on `PATH`. The error says how to get it.
pub fn find_binary(name: &str, given: Option<&Path>) -> Result<PathBuf, BinaryNotFound> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(BinaryNotFound::Given(p.to_path_buf()))
        };
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    // the cnf-dataplane binary is built by package cnf-dataplane-daemon
    let package = if name == "cnf-dataplane" {
        "cnf-dataplane-daemon"
    } else {
        name
    };
    Err(BinaryNotFound::Nowhere {
        name: name.to_string(),
        package: package.to_string(),
    })
}

/// Why [`find_binary`] found nothing.
#[derive(Debug, Error)]
pub enum BinaryNotFound {
    /// The path given is not a file.
    #[error("{} does not exist", .0.display())]
    Given(PathBuf),
    /// Not next to this executable, nor on `PATH`.
    #[error(
        "{name} not found next to vnfctl or on PATH; install it (cargo install --locked --path {package}) or build it \
         (cargo build --release -p {package})"
    )]
    Nowhere {
        /// The binary.
        name: String,
        /// The workspace package that builds it.
        package: String,
    },
}

/// A cnf-dataplane just started by [`Testbed::spawn_dataplane`].
struct Spawned {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
    metrics: SocketAddr,
}

/// Where a started cnf-dataplane answers and logs.
struct Started {
    sock: PathBuf,
    log: PathBuf,
    metrics: SocketAddr,
}

/// Waits until the data plane in `netns` reports an attachment on every interface of `want` (its `/metrics`),
/// and returns its attachments; fails with the end of its log when it exits or the timeout passes.
fn wait_attached(
    mut child: Option<&mut Child>,
    netns: &str,
    at: &Started,
    want: &[String],
    timeout: Duration,
) -> Result<Vec<(String, String)>, TestbedError> {
    let deadline = Instant::now() + timeout;
    let tail = |p: &Path| {
        let t = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    loop {
        if interrupted() {
            return Err(TestbedError::Interrupted);
        }
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(TestbedError::Dataplane {
                message: format!("in {netns}: exited ({status}) before the chain was attached"),
                log: tail(&at.log),
            });
        }
        if at.sock.exists()
            && let Ok(text) = metrics::scrape(netns, at.metrics)
        {
            let att = metrics::attachments(&metrics::parse(&text));
            if want.iter().all(|w| att.iter().any(|(i, _)| i == w)) {
                return Ok(att);
            }
        }
        if Instant::now() > deadline {
            return Err(TestbedError::Dataplane {
                message: format!(
                    "in {netns}: the chain was not attached to {} within {timeout:?}",
                    want.join(", "),
                ),
                log: tail(&at.log),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
