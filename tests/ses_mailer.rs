//! The SES mailer against moto_server: a message sent with SES v2 `SendEmail` (raw MIME) is read
//! back from moto's model dump, whole; a sender SES has not verified is refused, and the mailer
//! says so (the caller loses nothing, see the handler tests).

use integration_tests::moto;
use shared::Config;
use shared::mail::{Letter, Mailer, Outbox};

const SENDER: &str = "auth@ses.example.test";

/// The raw messages moto's SES backend holds, with their recipients.
fn sent() -> Vec<(Vec<String>, String)> {
    let dump: serde_json::Value = ureq::get(format!("{}/moto-api/data.json", moto::endpoint()))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    dump["ses"]["RawMessage"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let to = m["destinations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_string())
                .collect();
            (to, m["raw_data"].as_str().unwrap().to_string())
        })
        .collect()
}

async fn outbox(from: &str) -> Outbox {
    let vars = [
        ("AUTH_SIGNING_KEY", "file:unused.pem".to_string()),
        ("AUTH_MAILER", "ses".into()),
        ("AUTH_MAIL_FROM", format!("Example <{from}>")),
        ("AUTH_APP_NAME", "Acme".into()),
    ];
    let config =
        Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let aws = moto::sdk_config().await;
    Outbox {
        mailer: Mailer::new(&config.mail, || async { aws }).await.unwrap(),
        app_name: config.app_name,
        verify_url: None,
        verify_ttl: config.mail.verify_ttl,
        reset_ttl: config.mail.reset_ttl,
        forgot_min: config.mail.forgot_min,
        forgot_per_source_hour: config.mail.forgot_per_source_hour,
    }
}

#[tokio::test]
async fn a_message_goes_out_through_ses_from_the_verified_sender() {
    let ses = aws_sdk_sesv2::Client::new(&moto::sdk_config().await);
    ses.create_email_identity()
        .email_identity(SENDER)
        .send()
        .await
        .unwrap();
    let outbox = outbox(SENDER).await;
    let to = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let link = "https://auth.example.test/reset-password?token=abc";
    let letter = Letter::Reset {
        link,
        seconds: 1800,
    };
    assert!(outbox.post("id-ada", "ada", &to, letter, "reset").await);
    let mine: Vec<_> = sent()
        .into_iter()
        .filter(|(r, _)| r.contains(&to))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let raw = &mine[0].1;
    assert!(raw.contains(&format!("To: {to}")), "{raw}");
    assert!(raw.contains(&format!("From: Example <{SENDER}>")), "{raw}");
    assert!(raw.contains("Subject: Acme: reset your password"), "{raw}");
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(raw.contains("Content-Type: text/plain") && raw.contains("Content-Type: text/html"));
}

#[tokio::test]
async fn an_unverified_sender_is_refused_and_reported() {
    let outbox = outbox("nobody@unverified.example.test").await;
    let to = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    assert!(
        !outbox
            .post("id-ada", "ada", &to, Letter::PasswordChanged, "notice")
            .await
    );
    assert!(sent().iter().all(|(r, _)| !r.contains(&to)));
}
