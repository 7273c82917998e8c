//! The same API on the Redis store (`TestApp::builder().redis()`): a
//! service created there is listed, read back, and routed as in memory.

use tests::TestApp;

#[tokio::test]
async fn a_service_created_on_redis_is_listed_read_back_and_routed() {
    let app = TestApp::builder().redis().spawn().await;
    let id = app.create("chat-delay", "5550400").await;

    let (status, listed) = app
        .get("/genesys/1/service/callback/chat-delay?_customer_number=5550400")
        .await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["_id"], id.as_str(), "{listed:?}");

    let found = app.query_by_id(&id).await;
    assert_eq!(found["_customer_number"], "5550400", "{found}");
    assert_eq!(found["usr_customer_name"], "Bob Markel", "{found}");
    assert_eq!(found["_callback_state"], "QUEUED", "{found}");

    // Routing reads and writes the store too: the agent gets the service.
    app.ready_agent("ann", &["support"], 1).await;
    app.wait_for_record(&id, "ann takes the service", |r| r["agent"] == "ann")
        .await;
    assert_eq!(app.agent_services("ann").await, vec![id.clone()]);
}
