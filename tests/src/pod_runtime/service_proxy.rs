//! What kube-proxy and a cloud's load-balancer controller do for `NodePort` and
//! `LoadBalancer` Services, on this machine: a `NodePort` Service's node ports are
//! served on the Node's address (127.0.0.1); a `LoadBalancer` Service gets a loopback
//! address of its own as its `status.loadBalancer.ingress` and is served there on its
//! ports. Each connection is forwarded (TCP, byte for byte) to a Pod the Service
//! selects that declares the target port (a named `targetPort` picks only Pods whose
//! containers name that port, as Kubernetes' endpoints do).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use k8s_openapi::{
    api::core::v1::{Pod, Service},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, info, warn};

use super::{pod::Context, spec};
use crate::net::free_loopback_addr;

/// The Node's address: where node ports are served.
pub const NODE_ADDRESS: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// One served address and the Service port behind it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Route {
    listen: SocketAddr,
    service: String,
    port_index: usize,
}

/// The proxy's state: what it serves, and the load-balancer addresses it handed out.
#[derive(Debug, Default)]
pub(crate) struct ServiceProxy {
    serving: BTreeMap<Route, JoinHandle<()>>,
    load_balancers: BTreeMap<String, Ipv4Addr>,
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        for t in self.serving.values() {
            t.abort();
        }
    }
}

fn key_of(s: &Service) -> String {
    format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any())
}

fn ingress_of(s: &Service) -> Option<Ipv4Addr> {
    s.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .ip
        .as_ref()?
        .parse()
        .ok()
}

/// Brings what is served in line with the Services: gives each `LoadBalancer`
/// Service without one an address (written to its status), serves every node port
/// and load-balancer port, and stops serving what is gone.
pub(crate) async fn sync(ctx: &Arc<Context>, proxy: &Mutex<ServiceProxy>) {
    let services: Vec<Service> = ctx
        .shared
        .lock()
        .expect("runtime state lock")
        .services
        .values()
        .cloned()
        .collect();
    let mut wanted = BTreeSet::new();
    for s in &services {
        let key = key_of(s);
        let spec = s.spec.clone().unwrap_or_default();
        let ports = spec.ports.clone().unwrap_or_default();
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if !matches!(kind, "NodePort" | "LoadBalancer") {
            continue;
        }
        for (i, p) in ports.iter().enumerate() {
            if let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok()) {
                wanted.insert(Route {
                    listen: SocketAddr::from((NODE_ADDRESS, np)),
                    service: key.clone(),
                    port_index: i,
                });
            }
        }
        if kind != "LoadBalancer" {
            continue;
        }
        let held = ctx
            .shared
            .lock()
            .expect("runtime state lock")
            .hold_load_balancers;
        let ip = match ingress_of(s) {
            Some(ip) => ip,
            None if held => continue,
            None => {
                let given = proxy
                    .lock()
                    .expect("proxy lock")
                    .load_balancers
                    .get(&key)
                    .copied();
                let ip = match given {
                    Some(ip) => ip,
                    None => {
                        let numbers: Vec<u16> = ports
                            .iter()
                            .filter_map(|p| u16::try_from(p.port).ok())
                            .collect();
                        match free_loopback_addr(&numbers) {
                            Ok(ip) => ip,
                            Err(e) => {
                                warn!(service = %key, error = %e, "No address for a load balancer");
                                continue;
                            }
                        }
                    }
                };
                proxy
                    .lock()
                    .expect("proxy lock")
                    .load_balancers
                    .insert(key.clone(), ip);
                let api: Api<Service> =
                    Api::namespaced(ctx.client.clone(), &s.namespace().unwrap_or_default());
                let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string()}]}}});
                match api
                    .patch_status(
                        &s.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => info!(service = %key, %ip, "Load balancer address assigned"),
                    Err(e) => {
                        warn!(service = %key, error = %e, "Failed to write the load balancer's address")
                    }
                }
                ip
            }
        };
        for (i, p) in ports.iter().enumerate() {
            if let Ok(port) = u16::try_from(p.port) {
                wanted.insert(Route {
                    listen: SocketAddr::from((ip, port)),
                    service: key.clone(),
                    port_index: i,
                });
            }
        }
    }
    let mut proxy = proxy.lock().expect("proxy lock");
    proxy.serving.retain(|route, task| {
        let keep = wanted.contains(route) && !task.is_finished();
        if !keep {
            task.abort();
        }
        keep
    });
    let live: BTreeSet<String> = services.iter().map(key_of).collect();
    proxy.load_balancers.retain(|k, _| live.contains(k));
    for route in wanted {
        if proxy.serving.contains_key(&route) {
            continue;
        }
        let std_listener = match std::net::TcpListener::bind(route.listen) {
            Ok(l) => l,
            Err(e) => {
                warn!(listen = %route.listen, service = %route.service, error = %e, "Cannot serve a Service port");
                continue;
            }
        };
        let _ = std_listener.set_nonblocking(true);
        let Ok(listener) = TcpListener::from_std(std_listener) else {
            continue;
        };
        debug!(listen = %route.listen, service = %route.service, "Serving a Service port");
        let task = tokio::spawn(serve(ctx.clone(), listener, route.clone()));
        proxy.serving.insert(route, task);
    }
}

/// The port `target` names on `pod`, if it declares it.
fn target_port(pod: &Pod, target: &IntOrString) -> Option<u16> {
    match target {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Where a new connection to `route` goes: the first selected Pod (by name) that has
/// the target port.
fn backend(ctx: &Context, route: &Route) -> Option<SocketAddr> {
    let shared = ctx.shared.lock().expect("runtime state lock");
    let svc = shared.services.get(&route.service)?;
    let port = svc.spec.as_ref()?.ports.as_ref()?.get(route.port_index)?;
    let target = port
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(port.port));
    let mut pods: Vec<(Pod, Ipv4Addr)> = shared.pods.values().cloned().collect();
    pods.sort_by_key(|(p, _)| p.name_any());
    spec::selected(svc, &pods)
        .into_iter()
        .find_map(|(p, ip)| target_port(p, &target).map(|port| SocketAddr::from((*ip, port))))
}

async fn serve(ctx: Arc<Context>, listener: TcpListener, route: Route) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            // Out of descriptors, say: wait rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let Some(to) = backend(&ctx, &route) else {
            debug!(service = %route.service, "No Pod behind the Service; connection closed");
            continue;
        };
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(to).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => debug!(%to, error = %e, "Backend refused the connection"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

    use super::*;

    #[test]
    fn a_named_target_port_is_found_only_on_pods_that_declare_it() {
        let pod = |ports: Vec<(&str, i32)>| Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    ports: Some(
                        ports
                            .into_iter()
                            .map(|(n, p)| ContainerPort {
                                name: Some(n.into()),
                                container_port: p,
                                ..ContainerPort::default()
                            })
                            .collect(),
                    ),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let broker = pod(vec![("internal", 29092), ("outside", 9094)]);
        let controller = pod(vec![("controller", 29093)]);
        let named = IntOrString::String("outside".into());
        assert_eq!(target_port(&broker, &named), Some(9094));
        assert_eq!(target_port(&controller, &named), None);
        assert_eq!(target_port(&controller, &IntOrString::Int(1)), Some(1));
    }
}
