//! Sidecar mode in the testbed: a manifest with `spec.target` (docs/sidecar.md) runs its chain inside every
//! server namespace, attached to the server's own interface, instead of in a dedicated CNF namespace.
//!
//! The rules (also in docs/user-guide.md, "Sidecar mode"):
//! - **Which pods**: the testbed's servers stand for the workload pods. Every server namespace (the load
//!   balancer's backends and NAT targets, or the sink of a chain without services) is a selected pod;
//!   `podSelector` and `namespaceSelector` are not evaluated, because the testbed has no pods with labels, only
//!   the servers the manifest's traffic goes to.
//! - **Where the chain runs**: one `cnf-dataplane` per selected server namespace, started there like the
//!   injected sidecar is started in a pod: attached to the server's interface named by `interfaces.ingress`
//!   (default `eth0`, the pod's interface), gRPC on its own 0600 Unix socket, `/metrics` on 127.0.0.1 inside
//!   that namespace (so neither control port can be cut by the chain on the server's interface).
//! - **The rest of the layout** is the dedicated one-armed layout (clients, addresses, routes, flows), but the CNF
//!   namespace only routes (kernel forwarding, no chain): it stands for the cluster network between the
//!   clients and the pods.
//! - **Services** (DNAT destinations, load-balancer VIPs): the router sends each service address to the pod of its
//!   first target, as a cluster's Service sends it to a pod; the pod's chain translates on ingress and its TC
//!   egress translates the replies back (cnf-dataplane attaches it in sidecar mode).
//! - The testbed's counters ([`super::Testbed::scrape_metrics`]) are the sum over the pods' sidecars.
//! - A pod has one interface: `interfaces.egress` and secondary networks are refused, as is a forwarder that
//!   redirects (it would need a second interface in the pod).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::{Plan, Role};
use super::{Testbed, TestbedError, TestbedOptions, metrics};

/// One running sidecar (a `cnf-dataplane` in a server namespace).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarRun {
    /// The server ("pod") namespace.
    pub netns: String,
    /// The interface the chain is attached to there.
    pub interface: String,
    /// Its gRPC Unix socket.
    pub grpc_socket: PathBuf,
    /// Its metrics endpoint (127.0.0.1 inside `netns`).
    pub metrics: String,
    /// Its log file.
    pub log: PathBuf,
    /// Attachments it reported: (interface, hook).
    pub attached: Vec<(String, String)>,
}

impl SidecarRun {
    /// The metrics endpoint as an address.
    pub fn metrics_addr(&self) -> Result<SocketAddr, TestbedError> {
        self.metrics
            .parse()
            .map_err(|source| TestbedError::MetricsAddr {
                addr: self.metrics.clone(),
                source,
            })
    }
}

fn bad(field: &str, message: &str) -> TestbedError {
    TestbedError::Plan {
        field: field.into(),
        message: message.into(),
    }
}

/// Refuses what a testbed pod cannot hold (it has exactly one interface).
pub(super) fn check(chain: &crds::VNFChain) -> Result<(), TestbedError> {
    let spec = &chain.spec;
    if spec.interfaces.egress.is_some() {
        return Err(bad(
            "spec.interfaces.egress",
            "in sidecar mode (spec.target) the testbed's pods have one interface, the ingress: remove the egress",
        ));
    }
    if !spec.interfaces.secondary_networks.is_empty() {
        return Err(bad(
            "spec.interfaces.secondaryNetworks",
            "a chain with spec.target cannot add networks to the pods",
        ));
    }
    for (i, f) in spec.functions.iter().enumerate() {
        if let Some(fwd) = &f.forwarder
            && fwd.mode == crds::ForwardMode::Redirect
        {
            return Err(bad(
                &format!("spec.functions[{i}].forwarder"),
                "in sidecar mode the chain runs on the pod's only interface; a forwarder that redirects needs \
                 another one",
            ));
        }
    }
    Ok(())
}

/// Turns a dedicated one-armed plan into the sidecar layout: every server namespace is a pod running the chain
/// on its interface named like the manifest's ingress, and the CNF namespace carries no chain.
pub(super) fn place(chain: &crds::VNFChain, plan: &mut Plan) {
    let ingress = chain.spec.interfaces.ingress.as_str().to_string();
    plan.sidecar_pods.clear();
    for e in plan
        .endpoints
        .iter_mut()
        .filter(|e| matches!(e.role, Role::Server | Role::Sink))
    {
        e.interface = ingress.clone();
        plan.sidecar_pods.push(e.netns.clone());
    }
    for c in &mut plan.cnf_interfaces {
        c.attached = false;
    }
}

impl Testbed {
    /// Starts one sidecar per pod of the plan, then waits until every one has attached the chain to its pod's
    /// interface. Each is recorded in the state before it is waited for, so a failure removes all of them.
    pub(super) fn start_sidecars(
        &mut self,
        bin: &Path,
        tmp: &Path,
        opts: &TestbedOptions,
    ) -> Result<(), TestbedError> {
        self.route_services_to_pods()?;
        let pods: Vec<(String, String, String)> = self
            .state
            .plan
            .sidecar_pods
            .iter()
            .filter_map(|ns| self.state.plan.endpoints.iter().find(|e| &e.netns == ns))
            .map(|e| (e.netns.clone(), e.bridge_port.clone(), e.interface.clone()))
            .collect();
        for (netns, tag, interface) in &pods {
            let s = self.spawn_dataplane(bin, tmp, opts, netns, &format!("sidecar-{tag}"))?;
            self.pod_children.push(s.child);
            self.state.sidecars.push(SidecarRun {
                netns: netns.clone(),
                interface: interface.clone(),
                grpc_socket: s.sock,
                metrics: s.metrics.to_string(),
                log: s.log,
                attached: Vec::new(),
            });
            self.step()?;
        }
        for i in 0..self.state.sidecars.len() {
            let run = self.state.sidecars[i].clone();
            let metrics = run.metrics_addr()?;
            let at = super::Started {
                sock: run.grpc_socket.clone(),
                log: run.log.clone(),
                metrics,
            };
            let want = [run.interface.clone()];
            let attached = super::wait_attached(
                self.pod_children.get_mut(i),
                &run.netns,
                &at,
                &want,
                opts.attach_timeout,
            )?;
            self.state.sidecars[i].attached = attached.clone();
            self.state.attached.extend(attached);
        }
        // The first pod's endpoints stand for "the data plane" in what `up` prints.
        if let Some(first) = self.state.sidecars.first() {
            self.state.grpc_socket = Some(first.grpc_socket.clone());
            self.state.metrics = Some(first.metrics.clone());
            self.state.dataplane_log = Some(first.log.clone());
        }
        self.step()
    }

    /// The router (the CNF namespace) sends each service address (a DNAT destination, a load-balancer VIP) to
    /// the pod of its first target, as a cluster's Service sends it to a pod: the chain in that pod translates it
    /// on ingress and its TC egress translates the replies back. Routes live in the CNF namespace and go with it.
    fn route_services_to_pods(&mut self) -> Result<(), TestbedError> {
        let cnf = self.state.plan.cnf_netns.clone();
        let mut done = std::collections::BTreeSet::new();
        for svc in &self.state.plan.services {
            let Some((to, _)) = svc.targets.first() else {
                continue;
            };
            if svc.address == *to || !done.insert(svc.address) {
                continue;
            }
            let plen = if svc.address.is_ipv4() { 32 } else { 128 };
            netkit::Netlink::open_in(&cnf)
                .and_then(|mut n| n.add_route(&netkit::Route::to(svc.address, plen).via(*to)))
                .map_err(pktgen::netns::NetnsError::from)?;
        }
        Ok(())
    }

    /// The sidecars of a sidecar-mode testbed (empty in dedicated mode).
    pub fn sidecars(&self) -> &[SidecarRun] {
        &self.state.sidecars
    }
}

/// The `/metrics` of every sidecar, summed: one line per series, its value the sum over the pods (counters and
/// histogram buckets add up; `HELP`/`TYPE` lines are kept once).
pub(super) fn scrape_all(runs: &[SidecarRun]) -> Result<String, TestbedError> {
    let mut texts = Vec::new();
    for r in runs {
        let addr = r.metrics_addr()?;
        texts.push(metrics::scrape(&r.netns, addr)?);
    }
    Ok(sum_texts(&texts))
}

/// Sums Prometheus text expositions series by series (see [`scrape_all`]).
pub fn sum_texts(texts: &[String]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for t in texts {
        for line in t.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line.starts_with('#') {
                if !order.iter().any(|o| o == line) {
                    order.push(line.to_string());
                }
                continue;
            }
            let Some((head, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let key = head.to_string();
            if !sums.contains_key(&key) {
                order.push(key.clone());
            }
            *sums.entry(key).or_insert(0.0) += v;
        }
    }
    let mut out = String::new();
    for line in order {
        match sums.get(&line) {
            Some(v) => out.push_str(&format!("{line} {v}\n")),
            None => {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testbed::plan::{plan, tests::example};

    #[test]
    fn the_chain_moves_into_every_server_namespace() {
        let p = plan(&example("sidecar-web.yaml"), "sw").expect("plans");
        let sink = p.endpoints.iter().find(|e| e.role == Role::Sink);
        assert_eq!(
            p.sidecar_pods,
            vec![sink.expect("a sink").netns.clone()],
            "the sink is the pod"
        );
        assert!(
            p.cnf_interfaces.iter().all(|c| !c.attached),
            "no chain on the router"
        );
        let mut edge = example("edge-chain.yaml");
        edge.spec.target = example("sidecar-web.yaml").spec.target;
        edge.spec.placement = Default::default();
        let p = plan(&edge, "se").expect("plans");
        let servers: Vec<&str> = p
            .endpoints
            .iter()
            .filter(|e| e.role == Role::Server)
            .map(|e| e.netns.as_str())
            .collect();
        assert_eq!(servers.len(), 4);
        assert_eq!(p.sidecar_pods, servers);
    }

    #[test]
    fn what_a_pod_cannot_hold_is_refused_with_its_field() {
        let mut c = example("sidecar-web.yaml");
        c.spec.interfaces.egress = Some(crds::net::InterfaceName::from("eth1"));
        let e = plan(&c, "sw").expect_err("refused").to_string();
        assert!(e.contains("spec.interfaces.egress"), "{e}");
    }

    #[test]
    fn metrics_of_the_pods_are_summed_series_by_series() {
        let a = "# TYPE x counter\nx{function=\"fw\"} 3\ny 1\n".to_string();
        let b = "# TYPE x counter\nx{function=\"fw\"} 4\nz 2\nbroken\n".to_string();
        assert_eq!(
            sum_texts(&[a, b]),
            "# TYPE x counter\nx{function=\"fw\"} 7\ny 1\nz 2\n"
        );
    }
}
