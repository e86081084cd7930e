//! Mail: the messages this service sends (built from templates compiled into the binary) and
//! the mailer that sends them, chosen by `AUTH_MAILER`:
//! - `file:DIR`: one RFC 5322 `.eml` file per message, and a log line naming it (local runs);
//! - `smtp://HOST:PORT` (STARTTLS required, unless HOST is a loopback address) or
//!   `smtps://HOST:PORT`, through `lettre`, with `AUTH_SMTP_USERNAME`/`AUTH_SMTP_PASSWORD`;
//! - `ses`: Amazon SES v2 `SendEmail` with the raw message.
//!
//! Every message is multipart (text and HTML) and carries no secret but the one link it exists
//! for. A mailer that fails loses nothing the caller did (see [`crate::authn::email`]): the
//! failure is logged, without the message, and counted.

mod messages;

pub use messages::{Letter, compose};

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailConfig, MailerConfig, SmtpTls};
use crate::metrics::{self, Outcome};

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The message could not be built (an address the builder refuses).
    #[error("cannot build the message: {0}")]
    Build(String),
    /// The mailer refused it or could not be reached.
    #[error("the mailer failed: {0}")]
    Send(String),
}

/// Where messages go.
enum Transport {
    File(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Ses(aws_sdk_sesv2::Client),
}

/// The configured mailer with its sender.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.transport {
            Transport::File(_) => "file",
            Transport::Smtp(_) => "smtp",
            Transport::Ses(_) => "ses",
        };
        f.debug_struct("Mailer")
            .field("transport", &kind)
            .field("from", &self.from.to_string())
            .finish()
    }
}

/// A message to one recipient.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

impl Mailer {
    /// The mailer `config` names; `aws` is loaded only for `ses`. A `file:` directory is created
    /// here, so a cold start that cannot write it fails at once.
    pub async fn new<F, Fut>(config: &MailConfig, aws: F) -> Result<Self, MailError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = aws_config::SdkConfig>,
    {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| MailError::Build(format!("AUTH_MAIL_FROM: {e}")))?;
        let transport = match &config.mailer {
            MailerConfig::File(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| MailError::Send(format!("{}: {e}", dir.display())))?;
                Transport::File(AsyncFileTransport::new(dir))
            }
            MailerConfig::Smtp { host, port, tls } => {
                let parameters = || {
                    TlsParameters::new(host.clone()).map_err(|e| MailError::Build(e.to_string()))
                };
                let tls = match tls {
                    SmtpTls::StartTls => Tls::Required(parameters()?),
                    SmtpTls::Wrapper => Tls::Wrapper(parameters()?),
                    SmtpTls::None => Tls::None,
                };
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(*port)
                    .tls(tls)
                    .timeout(Some(std::time::Duration::from_secs(5)));
                if let Some((user, password)) = &config.smtp_credentials {
                    builder =
                        builder.credentials(Credentials::new(user.clone(), password.0.clone()));
                }
                Transport::Smtp(builder.build())
            }
            MailerConfig::Ses => Transport::Ses(aws_sdk_sesv2::Client::new(&aws().await)),
        };
        Ok(Mailer { transport, from })
    }

    /// The RFC 5322 message for `mail`: multipart/alternative, text then HTML.
    fn message(&self, mail: &Mail) -> Result<Message, MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| MailError::Build(format!("recipient: {e}")))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| MailError::Build(e.to_string()))
    }

    /// Sends `mail`.
    pub async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let message = self.message(mail)?;
        match &self.transport {
            Transport::File(files) => {
                let id = files
                    .send(message)
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?;
                tracing::info!(file = %format!("{id}.eml"), "mail written");
            }
            Transport::Smtp(smtp) => {
                smtp.send(message)
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?;
            }
            Transport::Ses(ses) => {
                use aws_sdk_sesv2::primitives::Blob;
                use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
                let raw = RawMessage::builder()
                    .data(Blob::new(message.formatted()))
                    .build()
                    .map_err(|e| MailError::Build(e.to_string()))?;
                ses.send_email()
                    .from_email_address(self.from.email.to_string())
                    .destination(Destination::builder().to_addresses(&mail.to).build())
                    .content(EmailContent::builder().raw(raw).build())
                    .send()
                    .await
                    .map_err(|e| MailError::Send(crate::aws::describe(&e)))?;
            }
        }
        Ok(())
    }

    /// Sends `mail`, logging and counting the outcome (never the message): `false` when it was
    /// not sent.
    pub async fn deliver(&self, mail: &Mail, what: &'static str, user_id: &str) -> bool {
        match self.send(mail).await {
            Ok(()) => {
                tracing::info!(user_id = %user_id, mail = what, "mail sent");
                metrics::record(Outcome::MailSent);
                true
            }
            Err(e) => {
                tracing::warn!(user_id = %user_id, mail = what, error = %e, "mail not sent");
                metrics::record(Outcome::MailFailed);
                false
            }
        }
    }
}

/// What the account routes need to send their mail: the mailer, the name in the subjects, and
/// where and how long the links work.
#[derive(Debug)]
pub struct Outbox {
    /// The mailer.
    pub mailer: Mailer,
    /// `AUTH_APP_NAME`.
    pub app_name: String,
    /// `AUTH_VERIFY_URL`, else the hosted verification page under the issuer.
    pub verify_url: Option<String>,
    /// `AUTH_VERIFY_TOKEN_SECONDS`.
    pub verify_ttl: u64,
    /// `AUTH_RESET_TOKEN_SECONDS`.
    pub reset_ttl: u64,
    /// `AUTH_FORGOT_MIN_MS`.
    pub forgot_min: std::time::Duration,
    /// `AUTH_FORGOT_PER_SOURCE_HOUR`.
    pub forgot_per_source_hour: u32,
}

impl Outbox {
    /// Composes `letter` for `username` at `to` and sends it, logging and counting the outcome.
    pub async fn post(
        &self,
        user_id: &str,
        username: &str,
        to: &str,
        letter: Letter<'_>,
        what: &'static str,
    ) -> bool {
        let mail = compose(&self.app_name, username, to, letter);
        self.mailer.deliver(&mail, what, user_id).await
    }
}
