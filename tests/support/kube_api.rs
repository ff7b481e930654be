//! A tiny in-process Kubernetes API server for EndpointSlices, written
//! from the API docs ("API Concepts": efficient detection of changes,
//! resource versions, 410 Gone), not from any client library:
//!
//! - list: `GET /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices
//!   ?labelSelector=K=V` answers an `EndpointSliceList` whose
//!   `metadata.resourceVersion` is the store's version;
//! - watch: the same path with `?watch=true&resourceVersion=RV` streams
//!   newline-delimited `{"type": ADDED|MODIFIED|DELETED, "object": ...}`
//!   events after RV; a version older than the last compaction gets one
//!   `ERROR` event with a `Status` of code 410 (Expired), then the end.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const PATH_PREFIX: &str = "/apis/discovery.k8s.io/v1/namespaces/";

struct Watch {
    namespace: String,
    selector: Option<(String, String)>,
    events: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct Store {
    version: u64,
    /// Watches from before this version get 410.
    compacted: u64,
    /// (namespace, name) -> object.
    slices: BTreeMap<(String, String), Value>,
    watches: Vec<Watch>,
    /// Every event since the last compaction: (version, namespace, line).
    history: Vec<(u64, String, Value)>,
    /// Requests served, for assertions ("it relisted").
    lists: usize,
}

/// The running server.
pub struct KubeApi {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    store: Arc<Mutex<Store>>,
}

impl KubeApi {
    pub async fn start() -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let store = Arc::new(Mutex::new(Store::default()));
        let st = Arc::clone(&store);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = Arc::clone(&st);
                        async move { Ok::<_, Infallible>(serve(&st, req)) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        KubeApi { url, store }
    }

    /// Creates or replaces a slice (as a controller would) and tells the
    /// watches that match it.
    pub fn apply(&self, namespace: &str, mut slice: Value) {
        let mut st = self.store.lock().unwrap();
        st.version += 1;
        slice["metadata"]["resourceVersion"] = json!(st.version.to_string());
        slice["metadata"]["namespace"] = json!(namespace);
        let key = (namespace.to_owned(), slice["metadata"]["name"].as_str().unwrap().to_owned());
        let kind = if st.slices.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        st.slices.insert(key, slice.clone());
        notify(&mut st, namespace, kind, &slice);
    }

    /// Deletes a slice and tells the watches.
    pub fn delete(&self, namespace: &str, name: &str) {
        let mut st = self.store.lock().unwrap();
        st.version += 1;
        if let Some(mut slice) = st.slices.remove(&(namespace.to_owned(), name.to_owned())) {
            slice["metadata"]["resourceVersion"] = json!(st.version.to_string());
            notify(&mut st, namespace, "DELETED", &slice);
        }
    }

    /// Applies a change no watch hears of, compacts history past it and
    /// ends every watch: a client can only learn of the change by
    /// relisting after its re-watch is refused with 410.
    pub fn change_behind_watches(&self, namespace: &str, mut slice: Value) {
        let mut st = self.store.lock().unwrap();
        st.version += 1;
        slice["metadata"]["resourceVersion"] = json!(st.version.to_string());
        let key = (namespace.to_owned(), slice["metadata"]["name"].as_str().unwrap().to_owned());
        st.slices.insert(key, slice);
        st.compacted = st.version + 1;
        st.history.clear();
        st.watches.clear();
    }

    /// How many lists were served.
    pub fn lists(&self) -> usize {
        self.store.lock().unwrap().lists
    }
}

/// An EndpointSlice of `service` with one port and `(ip, ready, serving,
/// terminating)` endpoints.
pub fn slice(name: &str, service: &str, port: (&str, u16), endpoints: &[(&str, bool, bool, bool)]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port.0, "port": port.1, "protocol": "TCP"}],
        "endpoints": endpoints.iter().map(|(ip, ready, serving, terminating)| json!({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            "zone": "zone-a",
        })).collect::<Vec<_>>(),
    })
}

fn notify(st: &mut Store, namespace: &str, kind: &str, slice: &Value) {
    let event = json!({"type": kind, "object": slice});
    st.history.push((st.version, namespace.to_owned(), event.clone()));
    let line = Bytes::from(format!("{event}\n"));
    st.watches.retain(|w| {
        if w.namespace != namespace || !matches(&w.selector, slice) {
            return !w.events.is_closed();
        }
        w.events.send(line.clone()).is_ok()
    });
}

fn matches(selector: &Option<(String, String)>, slice: &Value) -> bool {
    selector.as_ref().is_none_or(|(k, v)| slice["metadata"]["labels"][k].as_str() == Some(v))
}

fn serve(st: &Mutex<Store>, req: Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
    let path = req.uri().path();
    let Some(namespace) = path.strip_prefix(PATH_PREFIX).and_then(|r| r.strip_suffix("/endpointslices")) else {
        return status(StatusCode::NOT_FOUND, "NotFound", "not an endpointslices path");
    };
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let selector =
        query.get("labelSelector").and_then(|s| s.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned()));
    let mut st = st.lock().unwrap();
    if query.get("watch").is_none_or(|w| w != "true" && w != "1") {
        st.lists += 1;
        let items: Vec<Value> = st
            .slices
            .iter()
            .filter(|((ns, _), s)| ns == namespace && matches(&selector, s))
            .map(|(_, s)| s.clone())
            .collect();
        let list = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": {"resourceVersion": st.version.to_string()},
            "items": items,
        });
        return json_response(StatusCode::OK, list.to_string());
    }
    let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(st.version);
    let (tx, rx) = mpsc::unbounded_channel();
    if from + 1 < st.compacted {
        let gone = json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from} ({})", st.compacted), "reason": "Expired", "code": 410,
        }});
        let _ = tx.send(Bytes::from(format!("{gone}\n")));
    } else {
        // Events the client missed between its list (at `from`) and now.
        for (_, _, event) in
            st.history.iter().filter(|(v, ns, e)| *v > from && ns == namespace && matches(&selector, &e["object"]))
        {
            let _ = tx.send(Bytes::from(format!("{event}\n")));
        }
        st.watches.push(Watch { namespace: namespace.to_owned(), selector, events: tx });
    }
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(body).boxed());
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn json_response(code: StatusCode, body: String) -> Response<BoxBody<Bytes, Infallible>> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<BoxBody<Bytes, Infallible>> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    json_response(code, body.to_string())
}
