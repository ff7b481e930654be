//! The Kubernetes manifests in deploy/ agree with each other and with the
//! proxy: the sidecar config is valid, and every port, UID and name that
//! one file repeats from another is the same. (Schemas are checked by
//! scripts/lint-deploy.sh; this is what a schema cannot see.)

use serde_yaml::Value;

fn manifest(file: &str) -> Value {
    let path = format!("{}/deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `v` at a path of keys, or panics naming it (keys may contain dots:
/// `prometheus.io/port`).
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let leaf = path.iter().fold(v, |v, key| &v[*key]);
    assert!(!leaf.is_null(), "missing {path:?}");
    leaf
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).as_str().unwrap_or_else(|| panic!("{path:?} is not a string"))
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_sequence().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name:?}"))
}

/// The value of `--flag=VALUE` in a container's args.
fn flag(container: &Value, flag: &str) -> String {
    let prefix = format!("{flag}=");
    at(container, &["args"])
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {flag} in the init container's args"))
}

fn sidecar_config() -> outrigger::config::Settings {
    let cm = manifest("configmap.yaml");
    let text = str_at(&cm, &["data", "outrigger.yaml"]);
    outrigger::config::parse(text, "deploy/configmap.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn metrics_port(sidecar: &Value) -> u64 {
    at(named(at(sidecar, &["ports"]), "metrics"), &["containerPort"]).as_u64().unwrap()
}

/// The ConfigMap's config is valid, its admin server is reachable from
/// the node on the sidecar's named `metrics` port (the one probes,
/// annotations and the PodMonitor use), and its listeners are transparent
/// on the ports the iptables init step redirects to.
#[test]
fn sidecar_config_matches_the_pod_spec() {
    let cfg = sidecar_config();
    let pod = manifest("deployment.yaml");
    let spec = at(&pod, &["spec", "template", "spec"]);
    let (init, sidecar) =
        (named(at(spec, &["initContainers"]), "outrigger-init"), named(at(spec, &["initContainers"]), "outrigger"));

    assert!(cfg.admin.ip().is_unspecified(), "admin must bind 0.0.0.0 for kubelet probes: {}", cfg.admin);
    let admin_port = u64::from(cfg.admin.port());
    assert_eq!(metrics_port(sidecar), admin_port);
    assert_eq!(
        str_at(&pod, &["spec", "template", "metadata", "annotations", "prometheus.io/port"]),
        admin_port.to_string()
    );
    assert_eq!(flag(init, "--admin-port"), admin_port.to_string());

    let listener = |name: &str| cfg.listeners.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("{name}"));
    let (inbound, outbound) = (listener("inbound"), listener("outbound"));
    assert!(inbound.transparent && outbound.transparent);
    // REDIRECT from PREROUTING lands on the pod IP; from OUTPUT on 127.0.0.1.
    assert!(inbound.address.ip().is_unspecified(), "{}", inbound.address);
    assert_eq!(flag(init, "--inbound-port"), inbound.address.port().to_string());
    assert_eq!(flag(init, "--outbound-port"), outbound.address.port().to_string());
    assert!(cfg.drain_timeout.as_secs() < at(spec, &["terminationGracePeriodSeconds"]).as_u64().unwrap());
}

/// The sidecar is native (an init container that keeps running, after the
/// iptables step), probed on /ready and /live, runs as the UID the rules
/// exempt, and the app does not; the init step has exactly the
/// capabilities iptables needs.
#[test]
fn sidecar_is_native_probed_and_exempt() {
    let pod = manifest("deployment.yaml");
    let spec = at(&pod, &["spec", "template", "spec"]);
    let inits = at(spec, &["initContainers"]).as_sequence().unwrap();
    assert_eq!(inits.iter().map(|c| str_at(c, &["name"])).collect::<Vec<_>>(), ["outrigger-init", "outrigger"]);
    let (init, sidecar) = (&inits[0], &inits[1]);
    assert_eq!(str_at(sidecar, &["restartPolicy"]), "Always");
    for (probe, path) in [("startupProbe", "/ready"), ("readinessProbe", "/ready"), ("livenessProbe", "/live")] {
        let get = at(sidecar, &[probe, "httpGet"]);
        assert_eq!((str_at(get, &["path"]), str_at(get, &["port"])), (path, "metrics"), "{probe}");
    }
    let uid = at(sidecar, &["securityContext", "runAsUser"]).as_u64().unwrap();
    assert_eq!(flag(init, "--proxy-uid"), uid.to_string());
    for app in at(spec, &["containers"]).as_sequence().unwrap() {
        assert_ne!(
            at(app, &["securityContext", "runAsUser"]).as_u64(),
            Some(uid),
            "an app running as the proxy's UID bypasses it"
        );
    }
    let caps = at(init, &["securityContext", "capabilities", "add"]).as_sequence().unwrap();
    assert_eq!(caps.iter().map(|c| c.as_str().unwrap()).collect::<Vec<_>>(), ["NET_ADMIN", "NET_RAW"]);
    let mounted = at(named(at(spec, &["volumes"]), "outrigger-config"), &["configMap", "name"]);
    assert_eq!(mounted, at(&manifest("configmap.yaml"), &["metadata", "name"]));
    assert_eq!(at(spec, &["serviceAccountName"]), at(&manifest("serviceaccount.yaml"), &["metadata", "name"]));
}

/// The Service and the PodMonitor select the Deployment's pods, the
/// Service targets a port the app declares, and the PodMonitor scrapes the
/// sidecar's named metrics port.
#[test]
fn selectors_and_named_ports_line_up() {
    let pod = manifest("deployment.yaml");
    let labels = at(&pod, &["spec", "template", "metadata", "labels"]).as_mapping().unwrap();
    let selects = |selector: &Value| {
        for (k, v) in selector.as_mapping().unwrap() {
            assert_eq!(labels.get(k), Some(v), "pods lack label {k:?}");
        }
    };
    let svc = manifest("service.yaml");
    selects(at(&svc, &["spec", "selector"]));
    let app = named(at(&pod, &["spec", "template", "spec", "containers"]), "app");
    for port in at(&svc, &["spec", "ports"]).as_sequence().unwrap() {
        named(at(app, &["ports"]), str_at(port, &["targetPort"]));
    }
    let monitor = manifest("monitoring/podmonitor.yaml");
    assert_eq!(str_at(&monitor, &["kind"]), "PodMonitor");
    selects(at(&monitor, &["spec", "selector", "matchLabels"]));
    let sidecar = named(at(&pod, &["spec", "template", "spec", "initContainers"]), "outrigger");
    for ep in at(&monitor, &["spec", "podMetricsEndpoints"]).as_sequence().unwrap() {
        named(at(sidecar, &["ports"]), str_at(ep, &["port"]));
        assert_eq!(str_at(ep, &["path"]), "/metrics");
    }
}
