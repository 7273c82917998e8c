//! The log of a whole flow holds no customer number, name, e-mail address
//! or chat text whole: they are masked (`engine::pii`) or not logged.

use tests::node::Node;

use crate::support::NODE_BIN;

#[tokio::test]
async fn the_log_of_a_flow_holds_no_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = tests::shipped_scenarios_dir();
    // Our own crates at DEBUG, where a service's creation and every state
    // change are logged: no level of ours may hold personal data.
    let mut node = Node::start_with_env(
        NODE_BIN,
        "pii",
        "memory",
        &scenarios,
        dir.path(),
        &[(
            "RUST_LOG",
            "info,tower_http=warn,http_front=debug,runtime=debug,push=debug,engine=debug",
        )],
    )
    .await;
    let app = &node.app;
    app.ready_agent("alice", &["support"], 2).await;
    // Create, chat, query by number, complete: the customer's data passes
    // through every layer.
    let id = app.chat_with("alice", "4082652649", "device-pii-1").await;
    let (status, _) = app
        .get("/genesys/1/service/callback/chat-immediate?_customer_number=4082652649")
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[
                ("_customer_number", "+1 (408) 555-0199"),
                ("usr_customer_name", "Bob Markel"),
                ("email", "bob.markel@example.com"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post_json(
            &format!("/api/v1/services/{id}/complete"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200);
    node.stop();
    let log = node.log_text();
    assert!(log.contains("Service created."), "the log is read: {log}");
    for personal in [
        "4082652649",
        "555-0199",
        "Bob Markel",
        "bob.markel@example.com",
        "can we talk on video?",
    ] {
        assert!(
            !log.contains(personal),
            "`{personal}` is in the log:\n{log}"
        );
    }
}
