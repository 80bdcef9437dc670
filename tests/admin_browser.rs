//! The admin in a real browser: headless Chromium driven through WebDriver (fantoccini and
//! Debian's chromium-driver; `tests/browser.sh` installs them) against a real `serve`,
//! lookupd and `to-db` archive. Every page opens; a channel is paused and unpaused and the
//! broker's `/stats` says so; a channel is emptied and deleted through the confirmation (and
//! a dismissed confirmation does nothing); a message is found by its body text and its
//! timeline opened, its `<script>` body shown as text and never run; a deferred message is
//! cancelled; a replay is counted and run. On failure a screenshot is saved and its path
//! printed.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use nsqrs_testkit::{wait_for, Admin, Conn, Daemon, Frame, Lookupd, Nsqd, ToDb};
use serde_json::{json, Value};

const SCRIPT_BODY: &str = "order <script>window.pwned=1</script> for alice";

/// chromedriver on a free loopback port; killed when dropped.
struct Driver {
    _process: Daemon,
    url: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_driver() -> Driver {
    let missing = |b: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
    };
    assert!(
        !missing("chromedriver") && !missing("chromium"),
        "chromium and chromedriver are needed: run tests/browser.sh (apt-get install chromium chromium-driver)"
    );
    let port = free_port();
    let mut cmd = Command::new("chromedriver");
    cmd.arg(format!("--port={port}")).stdout(Stdio::null());
    let driver = Driver {
        _process: Daemon::spawn(cmd, "chromedriver"),
        url: format!("http://127.0.0.1:{port}"),
    };
    let addr = format!("127.0.0.1:{port}");
    wait_for("chromedriver", Duration::from_secs(20), || {
        // chromedriver keeps connections open, so a connect is the readiness probe.
        std::net::TcpStream::connect(&addr).is_ok()
    });
    driver
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    // Confirmations are answered by the test, never by the driver's default.
    caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

/// The cluster the browser looks at.
struct World {
    _dir: tempfile::TempDir,
    _lookupd: Lookupd,
    nsqd: Nsqd,
    _to_db: ToDb,
    _consumer: Conn,
    admin: Admin,
    deferred_id: String,
}

fn count(db: &str, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or_default()
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("archive.db").to_str().unwrap().to_string();
    let lookupd = Lookupd::start(&[]);
    let nsqd = Nsqd::start(&[
        &format!("--lookupd-tcp-address={}", lookupd.tcp),
        "--broadcast-address=127.0.0.1",
        "--lifecycle-events=all",
    ]);
    let to_db = ToDb::start(&nsqd, "orders", &db, &["--events", "--flush-interval=100ms"]);
    wait_for("to-db on the events topic", Duration::from_secs(20), || {
        nsqd.events_have_a_reader()
    });
    let mut consumer = Conn::connect(&nsqd.tcp);
    consumer.identify(json!({"client_id": "billing-worker", "user_agent": "browser-test/1.0"}));
    consumer.subscribe("orders", "billing", 10);
    assert_eq!(
        nsqd.post("/channel/create?topic=orders&channel=audit", b"").0,
        200
    );
    for body in [SCRIPT_BODY, r#"{"customer":7}"#] {
        assert_eq!(nsqd.post("/pub?topic=orders", body.as_bytes()).0, 200);
        match consumer.read_frame() {
            Some(Frame::Message { id, .. }) => consumer.cmd(&format!("FIN {id}")),
            other => panic!("expected a message, got {other:?}"),
        }
    }
    let deferred_id = nsqd.pub_for_id("/pub?topic=orders&defer=3600000", b"due in an hour");
    wait_for("the archive", Duration::from_secs(20), || {
        count(&db, "SELECT COUNT(*) FROM messages") == 2
            && count(
                &db,
                "SELECT COUNT(*) FROM events WHERE channel = 'billing' AND kind = 'finished'",
            ) == 2
    });
    wait_for("lookupd registration", Duration::from_secs(15), || {
        lookupd.get("/lookup?topic=orders").0 == 200
    });
    let admin = Admin::start(&[
        &format!("--lookupd-http-address={}", lookupd.http),
        &format!("--db={db}"),
        "--stats-sample-interval=200ms",
    ]);
    World {
        _dir: dir,
        _lookupd: lookupd,
        nsqd,
        _to_db: to_db,
        _consumer: consumer,
        admin,
        deferred_id,
    }
}

fn channel(n: &Nsqd, topic: &str, name: &str) -> Option<Value> {
    let s = n.stats();
    let t = s["topics"]
        .as_array()?
        .iter()
        .find(|t| t["topic_name"] == topic)?
        .clone();
    t["channels"]
        .as_array()?
        .iter()
        .find(|c| c["channel_name"] == name)
        .cloned()
}

type Step = Result<(), String>;

fn check(ok: bool, what: impl Into<String>) -> Step {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// Polls the page (or anything) until `probe` holds, for at most 20 s.
async fn eventually<F, Fut>(what: &str, mut probe: F) -> Step
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe().await {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn page_text(c: &Client) -> String {
    text_of(c, "body").await
}

/// Clicks the action button labelled `label` and answers its confirmation; once accepted,
/// waits for the page the action leads to (the script reloads or moves on after the answer),
/// so the next step never races that navigation.
async fn click_and_confirm(c: &Client, label: &str, accept: bool) -> Step {
    confirm(c, label, accept).await?;
    if !accept {
        return Ok(());
    }
    eventually(&format!("the page after {label}"), || async {
        c.execute(
            "return window.nsqrsTestMark === undefined && document.readyState === 'complete'",
            vec![],
        )
        .await
        .is_ok_and(|v| v == json!(true))
    })
    .await
}

/// Clicks the button labelled `label` and answers its confirmation, staying on the page.
async fn confirm(c: &Client, label: &str, accept: bool) -> Step {
    let xpath = format!("//button[normalize-space(.)='{label}']");
    let button = c
        .find(Locator::XPath(&xpath))
        .await
        .map_err(|e| format!("no {label} button: {e}"))?;
    c.execute("window.nsqrsTestMark = true", vec![])
        .await
        .map_err(|e| e.to_string())?;
    button.click().await.map_err(|e| format!("click {label}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.get_alert_text().await {
            Ok(text) if !text.is_empty() => break,
            _ if Instant::now() > deadline => return Err(format!("no confirmation after {label}")),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    if accept {
        c.accept_alert().await.map_err(|e| format!("accept: {e}"))
    } else {
        c.dismiss_alert().await.map_err(|e| format!("dismiss: {e}"))
    }
}

async fn steps(c: &Client, w: &World) -> Step {
    let base = format!("http://{}", w.admin.http);
    let go = |path: &str| format!("{base}{path}");

    // Every page opens.
    for (path, heading) in [
        ("/".to_string(), "Topics".to_string()),
        ("/topics/orders".into(), "Topic orders".into()),
        (
            "/topics/orders/billing".into(),
            "Channel billing of orders".into(),
        ),
        ("/nodes".into(), "Nodes".into()),
        (format!("/nodes/{}", w.nsqd.http), format!("Node {}", w.nsqd.http)),
        ("/lookup".into(), "Lookup".into()),
        ("/counter".into(), "Messages processed".into()),
        ("/messages".into(), "Messages".into()),
    ] {
        c.goto(&go(&path)).await.map_err(|e| format!("{path}: {e}"))?;
        let h1 = text_of(c, "h1").await;
        check(
            h1.starts_with(&heading),
            format!("{path}: heading {h1:?}, wanted {heading:?}"),
        )?;
    }
    // The counter's script fills in the number.
    c.goto(&go("/counter")).await.map_err(|e| e.to_string())?;
    eventually("the counter", || async {
        text_of(c, ".counter").await.chars().any(|ch| ch.is_ascii_digit())
    })
    .await?;
    // The charts are drawn from the samples.
    c.goto(&go("/topics/orders")).await.map_err(|e| e.to_string())?;
    let loaded = c
        .execute(
            "return [...document.querySelectorAll('.charts img')].map(i => i.naturalWidth)",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    check(loaded == json!([420, 420]), format!("charts not drawn: {loaded}"))?;

    // Pause and unpause billing; the broker's /stats follows.
    c.goto(&go("/topics/orders/billing"))
        .await
        .map_err(|e| e.to_string())?;
    click_and_confirm(c, "Pause", true).await?;
    step_until(
        || channel(&w.nsqd, "orders", "billing").is_some_and(|ch| ch["paused"] == true),
        "billing paused in /stats",
    )
    .await?;
    eventually("the Unpause button", || async {
        page_text(c).await.contains("Unpause")
    })
    .await?;
    click_and_confirm(c, "Unpause", true).await?;
    step_until(
        || channel(&w.nsqd, "orders", "billing").is_some_and(|ch| ch["paused"] == false),
        "billing unpaused in /stats",
    )
    .await?;

    // A dismissed confirmation does nothing; an accepted one empties, then deletes.
    assert_eq!(w.nsqd.post("/pub?topic=orders", b"for audit").0, 200);
    step_until(
        || channel(&w.nsqd, "orders", "audit").is_some_and(|ch| ch["depth"].as_i64() > Some(0)),
        "audit's backlog",
    )
    .await?;
    c.goto(&go("/topics/orders/audit"))
        .await
        .map_err(|e| e.to_string())?;
    click_and_confirm(c, "Delete", false).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    check(
        channel(&w.nsqd, "orders", "audit").is_some(),
        "a dismissed delete deleted",
    )?;
    click_and_confirm(c, "Empty", true).await?;
    step_until(
        || channel(&w.nsqd, "orders", "audit").is_some_and(|ch| ch["depth"] == 0),
        "audit emptied",
    )
    .await?;
    eventually("the reload after empty", || async {
        text_of(c, "h1").await.starts_with("Channel audit")
    })
    .await?;
    click_and_confirm(c, "Delete", true).await?;
    step_until(|| channel(&w.nsqd, "orders", "audit").is_none(), "audit deleted").await?;
    eventually("the topic page after delete", || async {
        text_of(c, "h1").await.starts_with("Topic orders")
    })
    .await?;

    // Search by body text from the header, open the message, read its timeline.
    let q = c
        .find(Locator::Css("header input[name=q]"))
        .await
        .map_err(|e| e.to_string())?;
    q.send_keys("pwned").await.map_err(|e| e.to_string())?;
    q.send_keys("\u{E007}").await.map_err(|e| e.to_string())?;
    eventually("search results", || async {
        page_text(c).await.contains("window.pwned")
    })
    .await?;
    let link = c
        .find(Locator::Css("table.messages a"))
        .await
        .map_err(|e| e.to_string())?;
    link.click().await.map_err(|e| e.to_string())?;
    eventually("the message page", || async {
        text_of(c, "h1").await.starts_with("Message ")
    })
    .await?;
    let body = text_of(c, "pre.body").await;
    check(body == SCRIPT_BODY, format!("body shown as {body:?}"))?;
    let timeline = text_of(c, "table.timeline").await;
    check(
        timeline.contains("delivered, attempt 1") && timeline.contains("finished"),
        format!("timeline: {timeline}"),
    )?;
    check(
        page_text(c).await.contains("Channel billing"),
        "no billing timeline",
    )?;
    let pwned = c
        .execute("return typeof window.pwned", vec![])
        .await
        .map_err(|e| e.to_string())?;
    check(pwned == json!("undefined"), "the body's script ran")?;

    // Cancel the deferred message from the channel page.
    c.goto(&go("/topics/orders/billing"))
        .await
        .map_err(|e| e.to_string())?;
    check(
        page_text(c).await.contains(&w.deferred_id),
        "deferred message not listed",
    )?;
    click_and_confirm(c, "Cancel", true).await?;
    eventually("the deferred list to empty", || async {
        page_text(c).await.contains("None deferred")
    })
    .await?;
    let listing: Value =
        serde_json::from_str(&w.nsqd.get("/deferred?topic=orders&channel=billing").1).unwrap();
    check(
        listing["channels"][0]["total"] == 0,
        format!("broker still defers it: {listing}"),
    )?;

    // Replay: count first, then run, with progress to the end.
    c.goto(&go("/topics/orders")).await.map_err(|e| e.to_string())?;
    let to = c
        .find(Locator::Css("input[name=to_topic]"))
        .await
        .map_err(|e| e.to_string())?;
    to.send_keys("orders_replayed").await.map_err(|e| e.to_string())?;
    c.find(Locator::XPath("//button[normalize-space(.)='Count']"))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    eventually("the dry-run count", || async {
        text_of(c, "#replay-count")
            .await
            .contains("3 messages in the window")
    })
    .await?;
    confirm(c, "Replay 3 messages", true).await?;
    eventually("the replay to finish", || async {
        text_of(c, "#replay-state").await.contains("finished, 3 of 3")
    })
    .await?;
    let stats = w.nsqd.stats();
    let replayed = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["topic_name"] == "orders_replayed" && t["message_count"] == 3);
    check(replayed, format!("orders_replayed in /stats: {stats}"))
}

/// Polls a synchronous check (the broker over HTTP) without blocking the runtime.
async fn step_until(mut f: impl FnMut() -> bool, what: &str) -> Step {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tokio::task::block_in_place(&mut f) {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_in_a_real_browser() {
    let driver = start_driver();
    let w = tokio::task::block_in_place(world);
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    let runner = client.clone();
    let world = std::sync::Arc::new(w);
    let w2 = world.clone();
    let outcome = tokio::spawn(async move { steps(&runner, &w2).await }).await;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(panic) => Some(format!("the steps panicked: {panic}")),
    };
    if let Some(why) = &failure {
        let shot = std::env::temp_dir().join(format!("nsqrs-admin-browser-{}.png", std::process::id()));
        match client.screenshot().await {
            Ok(png) => {
                let _ = std::fs::write(&shot, png);
                eprintln!("screenshot of the failure: {}", shot.display());
            }
            Err(e) => eprintln!("no screenshot: {e}"),
        }
        eprintln!(
            "page at failure: {}",
            client
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default()
        );
        let _ = client.close().await;
        panic!("{why}");
    }
    let _ = client.close().await;
    drop(world);
}
