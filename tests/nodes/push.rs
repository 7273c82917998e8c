//! Push across nodes on one Redis: a client holding its connection to node A
//! hears at once, and exactly once, what node B made, and only the client
//! it is for hears it. What a client received leaves the service's outbox,
//! whichever node is asked afterwards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use redis_store::testing::RedisServer;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::Site;

const DEVICE: &str = "device-on-a";
const OTHER_DEVICE: &str = "device-elsewhere";
const AGENT: &str = "agent-1";
const OTHER_AGENT: &str = "agent-2";

/// How long one step (a delivery, an outbox emptied) may take.
const STEP: Duration = Duration::from_secs(5);

/// How long to go on listening after the last step, so a duplicate that is
/// still on its way is counted.
const QUIET: Duration = Duration::from_millis(500);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What one push client received, in order: plain frames
/// (`{"channel", "tag", "data"}`) or Bayeux messages (`{"channel", "data"}`).
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<Value>>>);

impl Inbox {
    fn push(&self, message: Value) {
        self.0.lock().unwrap().push(message);
    }

    fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

/// One push client, listening in a task of its own until dropped.
struct Client {
    name: &'static str,
    inbox: Inbox,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// What the client received, each as the notification it carries
    /// ([`kind`]), in order.
    fn kinds(&self) -> Vec<String> {
        self.inbox.all().iter().map(kind).collect()
    }

    /// Waits until the client received a message of this kind; answers it.
    async fn wait_for(&self, wanted: &str, site: &Site) -> Value {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if let Some(m) = self.inbox.all().into_iter().find(|m| kind(m) == wanted) {
                return m;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{} did not receive {wanted} within {STEP:?}; it received {:?}\n{}",
                    self.name,
                    self.kinds(),
                    site.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What a received message is: `state:<GMS state>` for a state change, the
/// tag for the rest (a Bayeux message has no tag of its own: the seed's
/// payloads carry theirs, and an internal notification is known by its
/// `_display_message`), or the channel of a meta message (a failure).
fn kind(m: &Value) -> String {
    let data = &m["data"];
    let tag = m["tag"]
        .as_str()
        .or(data["tag"].as_str())
        .map(str::to_owned)
        .or_else(|| {
            data.get("_display_message")
                .map(|_| format!("service.internal.{}", data["_id"].as_str().unwrap_or("?")))
        });
    match tag {
        Some(tag) if tag.starts_with("service.state.") => format!(
            "state:{}",
            data["message"]["_callback_state"].as_str().unwrap_or("?")
        ),
        Some(tag) => tag,
        None => format!("other:{m}"),
    }
}

fn ws_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.replacen("http://", "ws://", 1))
}

/// The next text frame, as JSON.
async fn next_json(ws: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("a JSON frame");
        }
    }
}

/// A plain WebSocket client on `/api/v1/push/ws?<key>=<value>`
/// (`gms_user` for a device, `agent_id` for an agent desktop).
async fn plain(name: &'static str, base: &str, key: &str, value: &str) -> Client {
    let url = ws_url(base, &format!("/api/v1/push/ws?{key}={value}"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("plain WebSocket");
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["channel"], "/meta/connected", "{hello}");
    assert!(hello["data"]["clientId"].is_string(), "{hello}");
    let inbox = Inbox::default();
    let task = tokio::spawn({
        let inbox = inbox.clone();
        async move {
            // Reading also answers the server's pings.
            while let Some(Ok(frame)) = ws.next().await {
                if let Message::Text(text) = frame {
                    inbox.push(serde_json::from_str(&text).expect("a JSON frame"));
                }
            }
        }
    });
    Client { name, inbox, task }
}

/// A Bayeux long-polling client of device `device` (the `gms_user` header,
/// as GMS clients send it), subscribed to `/_genesys`, always with a
/// `/meta/connect` held.
async fn long_polling(name: &'static str, base: &str, device: &'static str) -> Client {
    // A held connect lasts up to the node's connect timeout (30 s).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let post = {
        let http = http.clone();
        let base = base.to_owned();
        move |path: &str, batch: Value| {
            let request = http
                .post(format!("{base}/genesys/cometd{path}"))
                .header("gms_user", device)
                .json(&batch);
            async move {
                let resp = request.send().await.expect("cometd request");
                assert_eq!(resp.status(), 200);
                let replies: Value = resp.json().await.expect("a JSON batch");
                replies.as_array().expect("an array").clone()
            }
        }
    };
    let replies = post(
        "/handshake",
        json!([{"channel": "/meta/handshake", "version": "1.0", "id": "1",
                "supportedConnectionTypes": ["long-polling"]}]),
    )
    .await;
    assert_eq!(replies[0]["successful"], true, "{replies:?}");
    let client_id = replies[0]["clientId"].as_str().unwrap().to_owned();
    let replies = post(
        "",
        json!([{"channel": "/meta/subscribe", "clientId": client_id, "id": "2",
                "subscription": "/_genesys"}]),
    )
    .await;
    assert_eq!(replies[0]["successful"], true, "{replies:?}");
    let replies = post(
        "/connect",
        json!([{"channel": "/meta/connect", "clientId": client_id, "id": "3",
                "connectionType": "long-polling", "advice": {"timeout": 0}}]),
    )
    .await;
    assert_eq!(replies.last().unwrap()["successful"], true, "{replies:?}");
    let inbox = Inbox::default();
    let task = tokio::spawn({
        let inbox = inbox.clone();
        async move {
            for n in 4.. {
                let replies = post(
                    "/connect",
                    json!([{"channel": "/meta/connect", "clientId": client_id,
                            "id": n.to_string(), "connectionType": "long-polling"}]),
                )
                .await;
                for m in replies {
                    // A failed connect is kept: it shows among what was received.
                    if m["channel"] != "/meta/connect" || m["successful"] != true {
                        inbox.push(m);
                    }
                }
            }
        }
    });
    Client { name, inbox, task }
}

/// A Bayeux WebSocket client of agent `agent` (`?agent_id=`), subscribed to
/// its channel, always with a `/meta/connect` held.
async fn bayeux_socket(name: &'static str, base: &str, agent: &str) -> Client {
    let url = ws_url(base, &format!("/genesys/cometd?agent_id={agent}"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("Bayeux WebSocket");
    async fn exchange(ws: &mut Socket, batch: Value) -> Value {
        ws.send(Message::text(batch.to_string())).await.unwrap();
        next_json(ws).await
    }
    let replies = exchange(
        &mut ws,
        json!([{"channel": "/meta/handshake", "version": "1.0", "id": "1",
                "supportedConnectionTypes": ["websocket"]}]),
    )
    .await;
    assert_eq!(replies[0]["successful"], true, "{replies}");
    let client_id = replies[0]["clientId"].as_str().unwrap().to_owned();
    let replies = exchange(
        &mut ws,
        json!([{"channel": "/meta/subscribe", "clientId": client_id, "id": "2",
                "subscription": format!("/agents/{agent}")}]),
    )
    .await;
    assert_eq!(replies[0]["successful"], true, "{replies}");
    let replies = exchange(
        &mut ws,
        json!([{"channel": "/meta/connect", "clientId": client_id, "id": "3",
                "connectionType": "websocket", "advice": {"timeout": 0}}]),
    )
    .await;
    assert_eq!(replies[0]["successful"], true, "{replies}");
    let connect = move |n: u64| {
        Message::text(
            json!([{"channel": "/meta/connect", "clientId": client_id,
                    "id": n.to_string(), "connectionType": "websocket"}])
            .to_string(),
        )
    };
    let inbox = Inbox::default();
    let task = tokio::spawn({
        let inbox = inbox.clone();
        async move {
            let mut n = 4;
            if ws.send(connect(n)).await.is_err() {
                return;
            }
            while let Some(Ok(frame)) = ws.next().await {
                let Message::Text(text) = frame else { continue };
                let batch: Value = serde_json::from_str(&text).expect("a JSON batch");
                for m in batch.as_array().expect("an array").clone() {
                    if m["channel"] == "/meta/connect" && m["successful"] == true {
                        n += 1;
                        if ws.send(connect(n)).await.is_err() {
                            return;
                        }
                    } else {
                        inbox.push(m);
                    }
                }
            }
        }
    });
    Client { name, inbox, task }
}

/// Polls a service's record, on node A and B in turn, until `field` (an
/// outbox field) is empty; the record's view does not take anything out.
async fn wait_outbox_empty(site: &Site, id: &str, field: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    for i in 0.. {
        let app = &site.nodes[i % 2].app;
        let (status, rec) = app.get(&format!("/api/v1/services/{id}")).await;
        assert_eq!(status, 200, "{rec}");
        if rec[field].as_array().is_some_and(Vec::is_empty) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{field} of {id} not emptied by the push within {STEP:?}: {}\n{}",
                rec[field],
                site.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_one_node_hears_what_another_node_made_once() {
    let site = Site::start(2, RedisServer::start()).await;
    let (a, b) = (&site.nodes[0].app, &site.nodes[1].app);

    // The device listens on node A, twice (plain WebSocket and CometD
    // long-polling); its agent's desktop on node B (plain and CometD
    // WebSocket). Another device, on both nodes, and another agent listen too.
    let device_plain = plain("device plain WS on A", &a.base, "gms_user", DEVICE).await;
    let device_cometd = long_polling("device long-polling on A", &a.base, DEVICE).await;
    let desk_plain = plain("desk plain WS on B", &b.base, "agent_id", AGENT).await;
    let desk_cometd = bayeux_socket("desk CometD WS on B", &b.base, AGENT).await;
    let strangers = [
        plain("other device on A", &a.base, "gms_user", OTHER_DEVICE).await,
        plain("other device on B", &b.base, "gms_user", OTHER_DEVICE).await,
        plain("other agent on A", &a.base, "agent_id", OTHER_AGENT).await,
        plain("other agent on B", &b.base, "agent_id", OTHER_AGENT).await,
    ];
    let devices = [&device_plain, &device_cometd];
    let desks = [&desk_plain, &desk_cometd];
    // A supervisor's board on node A hears the changes made on node B.
    let board = plain("supervisor's board on A", &a.base, "supervisor", "true").await;

    // Everything the device is told is made on node B.
    let (status, created) = b
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[
                ("_customer_number", "5550142"),
                ("usr_customer_name", "Bob Markel"),
                ("_device_notification_id", DEVICE),
                ("_device_os", "comet"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["_id"].as_str().expect("_id").to_owned();
    for c in devices {
        c.wait_for("state:QUEUED", &site).await;
    }
    let changed = board
        .wait_for(&format!("service.changed.{id}"), &site)
        .await;
    assert_eq!(changed["channel"], "/supervisors", "{changed}");
    assert_eq!(changed["data"]["_callback_state"], "QUEUED", "{changed}");

    b.ready_agent(AGENT, &["support"], 1).await;
    let available = format!("service.agentavailable.{id}");
    for c in devices {
        let m = c.wait_for(&available, &site).await;
        let data = &m["data"];
        let notification = data["id"].as_str().expect("the notification's id");
        assert!(notification.starts_with(&id), "{m}");
        assert_eq!(
            *data,
            json!({
                "id": notification,
                "message": {
                    "_action": "get-dialog-user-confirmation-provide_code-false",
                    "_id": id,
                },
                "tag": available,
            }),
            "{}: {m}",
            c.name
        );
        assert_eq!(m["channel"], "/_genesys", "{m}");
        c.wait_for("state:ROUTING", &site).await;
    }

    let (status, body) = b
        .post_form(
            &format!("/genesys/1/service/{id}/internal-notification"),
            &[("_display_message", "Your agent will call you in a minute")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let internal = format!("service.internal.{id}");
    for c in devices {
        let m = c.wait_for(&internal, &site).await;
        assert_eq!(
            m["data"],
            json!({"_id": id, "_display_message": "Your agent will call you in a minute",
                   "_internal_message": ""}),
            "{}: {m}",
            c.name
        );
    }

    // Received, so out of the outbox: nothing left to retrieve, on either node.
    wait_outbox_empty(&site, &id, "outbox").await;
    for app in [a, b] {
        let (status, left) = app
            .post_form(
                &format!("/genesys/1/service/{id}/retrieve-notifications"),
                &[],
            )
            .await;
        assert_eq!((status, &left), (200, &json!([])));
    }

    // The customer confirms through node A: the offer reaches the desktops on B.
    let (status, dialog) = a
        .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
        .await;
    assert_eq!(status, 200, "{dialog}");
    let offer = format!("agent.offer.{id}");
    for c in desks {
        let m = c.wait_for(&offer, &site).await;
        assert_eq!(m["channel"], format!("/agents/{AGENT}"), "{m}");
        let message: Value = serde_json::from_str(m["data"]["message"].as_str().expect("message"))
            .expect("the offer is JSON text");
        assert_eq!(message["_action"], "offer", "{m}");
        assert_eq!(message["_id"], id.as_str(), "{m}");
        assert_eq!(message["_customer_number"], "5550142", "{m}");
    }
    for c in devices {
        c.wait_for("state:PROCESSING", &site).await;
    }
    wait_outbox_empty(&site, &id, "agent_outbox").await;
    for app in [a, b] {
        let (status, left) = app
            .post_form(
                &format!("/genesys/1/service/{id}/retrieve-agent-notifications"),
                &[],
            )
            .await;
        assert_eq!((status, &left), (200, &json!([])));
    }

    // Each heard its own, exactly once and in order; the others nothing.
    // Node A also tells a listening device its queue position, once a second
    // while the service waits: if that look fell in the short wait, it said 1
    // of 1. It is A's own, not relayed, so it is left out of the sequence.
    tokio::time::sleep(QUIET).await;
    let position = format!("service.position.{id}");
    for c in devices {
        for m in c.inbox.all().iter().filter(|m| kind(m) == position) {
            assert_eq!(
                m["data"]["message"],
                json!({"_id": id, "_action": "position", "_position": 1, "_total_waiting": 1}),
                "{}: {m}",
                c.name
            );
        }
        let kinds: Vec<String> = c.kinds().into_iter().filter(|k| *k != position).collect();
        assert_eq!(
            kinds,
            [
                "state:QUEUED".to_owned(),
                available.clone(),
                "state:ROUTING".to_owned(),
                internal.clone(),
                "state:PROCESSING".to_owned(),
            ],
            "{}",
            c.name
        );
    }
    for c in desks {
        assert_eq!(
            c.kinds(),
            vec![format!("agent.reserved.{id}"), offer.clone()],
            "{}",
            c.name
        );
    }
    for c in &strangers {
        assert_eq!(c.kinds(), Vec::<String>::new(), "{}", c.name);
    }
}

/// A node's `callbackd_push_relaying` gauge (None before it is set).
async fn relaying(node: &tests::TestApp) -> Option<u8> {
    let text = node
        .client
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("callbackd_push_relaying "))
        .map(|v| v.trim().parse().expect("0 or 1"))
}

/// Waits until node `i` says it relays (1) or does not (0).
async fn wait_relaying(site: &Site, i: usize, expected: u8) {
    let deadline = tokio::time::Instant::now() + STEP;
    while relaying(&site.nodes[i].app).await != Some(expected) {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "node {i} did not come to relaying {expected} within {STEP:?}\n{}",
                site.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// PUBLISH commands Redis ran so far (the relay's and the put script's).
async fn publishes(redis: &RedisServer) -> u64 {
    let client = redis::Client::open(redis.plain_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// A node alone on its Redis publishes nothing for other nodes: only its
/// own subscription heard its hello. A node that joins says hello, and
/// from then on a client on it hears what the first node makes; when it
/// goes, the first node's next publish tells it that it is alone again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_alone_relays_nothing_until_another_node_joins() {
    let mut site = Site::start(1, RedisServer::start()).await;
    wait_relaying(&site, 0, 0).await;
    let a = site.nodes[0].app.base.clone();
    let create = |base: String, customer: &'static str| async move {
        let (status, created) = tests::TestApp::at(base)
            .post_form(
                "/genesys/1/service/callback/chat-delay",
                &[
                    ("_customer_number", customer),
                    ("_device_notification_id", DEVICE),
                    ("_device_os", "comet"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{created}");
        created["_id"].as_str().expect("_id").to_owned()
    };
    // The first create may wake the timer loops (a PUBLISH of the put
    // script); a later one arms later timers and does not.
    create(a.clone(), "5550101").await;
    let before = publishes(&site.redis).await;
    create(a.clone(), "5550102").await;
    assert_eq!(publishes(&site.redis).await, before, "nothing relayed");

    site.add_node().await;
    wait_relaying(&site, 0, 1).await;
    let b = site.nodes[1].app.base.clone();
    let device = plain("device on B", &b, "gms_user", DEVICE).await;
    let id = create(a.clone(), "5550103").await;
    let queued = device.wait_for("state:QUEUED", &site).await;
    assert_eq!(queued["data"]["message"]["_id"], id.as_str(), "{queued}");

    site.nodes[1].stop();
    create(a.clone(), "5550104").await;
    wait_relaying(&site, 0, 0).await;
}
