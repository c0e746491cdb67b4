//! mail-sim over its two real listeners: a message sent over SMTP is listed
//! and shown over HTTP, dot-unstuffed; an injected temporary fault answers
//! 421 and closes the session; a permanent one answers 550 until cleared;
//! the messages sent to an address (of a tenant) are counted and deleted.

use std::net::SocketAddr;

use serde_json::{Value, json};
use shopstream_mail_sim::{Config, MAX_MESSAGE_BYTES, Server};
use shopstream_runtime::testkit;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// A plain SMTP client: one command, one (possibly multi-line) reply.
struct Smtp {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Smtp {
    async fn connect(addr: SocketAddr) -> (Smtp, String) {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut s = Smtp {
            r: BufReader::new(r),
            w,
        };
        let greeting = s.reply().await;
        (s, greeting)
    }

    /// The reply's last line ("" when the server closed the connection).
    async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).await.unwrap() == 0 {
                return String::new();
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// A whole message; returns the reply to MAIL FROM if it was refused,
    /// else the reply to the end of DATA.
    async fn send(&mut self, to: &str, body: &str) -> String {
        let mail = self
            .cmd("MAIL FROM:<shop@shopstream.local> BODY=8BITMIME")
            .await;
        if !mail.starts_with("250") {
            return mail;
        }
        assert!(
            self.cmd(&format!("RCPT TO:<{to}>"))
                .await
                .starts_with("250")
        );
        assert!(self.cmd("DATA").await.starts_with("354"));
        self.cmd(&format!("{body}\r\n.")).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_kept_listed_and_faults_refuse_them() {
    let sim = testkit::spawn_service::<Server>(|service| Config {
        service,
        dir: testkit::stack_dir().join(testkit::unique("mail-sim")),
        max_message_bytes: MAX_MESSAGE_BYTES,
    })
    .await;
    let smtp_addr = sim.grpc_addr.expect("the SMTP listener");
    let http = reqwest::Client::new();

    let (mut s, greeting) = Smtp::connect(smtp_addr).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(s.cmd("EHLO test.local").await.starts_with("250"));
    let body = "Subject: Your order is confirmed\r\nFrom: shop@shopstream.local\r\n\r\nThanks.\r\n..a line that began with a dot";
    let ok = s.send("ada@example.com", body).await;
    assert!(ok.starts_with("250 2.0.0 OK queued as "), "{ok}");
    let id = ok.rsplit(' ').next().unwrap().to_string();

    let list = testkit::get_json(&http, &format!("{}/messages", sim.http)).await;
    let first = &list["messages"][0];
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["subject"], "Your order is confirmed");
    assert_eq!(first["to"], json!(["ada@example.com"]));
    let shown = testkit::get_json(&http, &format!("{}/messages/{id}", sim.http)).await;
    assert!(
        shown["raw"]
            .as_str()
            .unwrap()
            .ends_with("\r\n.a line that began with a dot\r\n"),
        "{shown}"
    );
    let missing = http
        .get(format!("{}/messages/nope", sim.http))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // One temporary refusal: 421 and the session ends; the next one is accepted.
    let faults = format!("{}/_sim/faults", sim.http);
    let put = |f: Value| http.put(&faults).json(&f).send();
    assert_eq!(put(json!({"temporary": 1})).await.unwrap().status(), 200);
    let refused = s.send("bob@example.com", "Subject: one\r\n\r\nx").await;
    assert!(refused.starts_with("421"), "{refused}");
    assert_eq!(s.reply().await, "", "the server closed the session");
    let (mut s, _) = Smtp::connect(smtp_addr).await;
    assert!(s.cmd("HELO test.local").await.starts_with("250"));
    assert!(
        s.send("bob@example.com", "Subject: two\r\n\r\nx")
            .await
            .starts_with("250")
    );

    // Permanent: 550 for every message until cleared.
    assert_eq!(put(json!({"permanent": true})).await.unwrap().status(), 200);
    for _ in 0..2 {
        let refused = s.send("eve@example.com", "Subject: no\r\n\r\nx").await;
        assert!(refused.starts_with("550"), "{refused}");
    }
    let cleared = http.delete(&faults).send().await.unwrap();
    assert_eq!(cleared.status(), 200);
    assert!(
        s.send("eve@example.com", "Subject: yes\r\n\r\nx")
            .await
            .starts_with("250")
    );
    assert!(s.cmd("QUIT").await.starts_with("221"));

    let subjects: Vec<String> =
        testkit::get_json(&http, &format!("{}/messages", sim.http)).await["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["subject"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(subjects, ["yes", "two", "Your order is confirmed"]);

    // Bad fault settings change nothing.
    let bad = put(json!({"latency_ms": 60_001})).await.unwrap();
    assert_eq!(bad.status(), 422);
    let bad = put(json!({"slow": true})).await.unwrap();
    assert!(bad.status().is_client_error());
    let now = testkit::get_json(&http, &faults).await;
    assert_eq!(
        now,
        json!({"temporary": 0, "permanent": false, "latency_ms": 0})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_sent_to_an_address_are_counted_and_deleted() {
    let sim = testkit::spawn_service::<Server>(|service| Config {
        service,
        dir: testkit::stack_dir().join(testkit::unique("mail-sim")),
        max_message_bytes: MAX_MESSAGE_BYTES,
    })
    .await;
    let http = reqwest::Client::new();
    let (mut s, _) = Smtp::connect(sim.grpc_addr.expect("the SMTP listener")).await;
    assert!(s.cmd("HELO test.local").await.starts_with("250"));
    let mail = |tenant: &str, text: &str| {
        format!("X-Shopstream-Tenant: {tenant}\r\nSubject: {text}\r\n\r\n{text}")
    };
    for (to, body) in [
        ("Ada@Example.com", mail("t1", "one")),
        ("ada@example.com", mail("t2", "two")),
        ("bob@example.com", mail("t1", "three")),
    ] {
        assert!(s.send(to, &body).await.starts_with("250"));
    }
    let messages = format!("{}/messages", sim.http);
    let ada_t1 = format!("{messages}?to=ada@example.com&tenant=t1");
    let listed = testkit::get_json(&http, &format!("{ada_t1}&raw=true")).await;
    assert_eq!(listed["count"], 1, "{listed}");
    assert!(
        listed["messages"][0]["raw"]
            .as_str()
            .unwrap()
            .ends_with("one\r\n")
    );
    let all_ada = testkit::get_json(&http, &format!("{messages}?to=ADA@example.com")).await;
    assert_eq!(all_ada["count"], 2, "{all_ada}");

    let delete = |url: String| http.delete(url).send();
    let r = delete(ada_t1.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"deleted": 1}));
    let r = delete(ada_t1.clone()).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"deleted": 0}));
    assert_eq!(testkit::get_json(&http, &ada_t1).await["count"], 0);
    assert_eq!(testkit::get_json(&http, &messages).await["count"], 2);
    // Never everything at once.
    let r = delete(messages.clone()).await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(testkit::get_json(&http, &messages).await["count"], 2);
}
