//! `auth-admin client`: register, list and remove the OAuth clients of the OpenID Connect
//! provider. The rules are the domain's ([`shared::oauth::client`]); a confidential client's
//! secret is printed once, by `add`, and only its hash is stored.

use clap::Subcommand;
use serde_json::json;
use shared::clock;
use shared::oauth::{Client, ClientError, Registration};
use shared::store::{ClientStore, StoreError};

use crate::Failure;
use crate::show::shown;

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints {"client_id": …} as JSON, with "client_secret" for a
    /// confidential client (shown this once: only its hash is stored)
    Add {
        /// The client id: 1 to 64 of A-Z a-z 0-9 . _ -
        #[arg(long, value_name = "ID")]
        id: String,
        /// Where authorization responses may go, matched exactly (repeat for more; at least
        /// one): https, http on localhost, 127.0.0.1 or [::1], or a private-use scheme with a
        /// dot (com.example.app:/cb)
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// Where a logout may send the browser back, matched exactly (repeat for more)
        #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
        post_logout_redirect_uris: Vec<String>,
        /// A server-side client that authenticates with a secret
        #[arg(long)]
        confidential: bool,
    },
    /// List the clients by id: id, public or confidential, redirect URIs, post-logout redirect
    /// URIs (tab-separated; the URIs of a field space-separated)
    List,
    /// Remove a client
    Remove {
        /// The client id
        id: String,
    },
}

/// Runs one `client` command.
pub async fn run<S: ClientStore>(store: &S, command: ClientCommand) -> Result<(), Failure> {
    match command {
        ClientCommand::Add {
            id,
            redirect_uris,
            post_logout_redirect_uris,
            confidential,
        } => {
            let registration = Registration {
                client_id: id,
                redirect_uris,
                post_logout_redirect_uris,
                confidential,
            };
            let (client, secret) = Client::register(registration, clock::now()).map_err(refused)?;
            match store.put_client(&client).await {
                Ok(()) => {}
                Err(StoreError::Duplicate) => {
                    return Err(Failure::Input(format!(
                        "a client with id {} is registered already",
                        client.client_id
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            let mut out = json!({ "client_id": client.client_id });
            if let Some(secret) = secret {
                out["client_secret"] = json!(secret.expose());
            }
            println!("{out}");
            Ok(())
        }
        ClientCommand::List => {
            for client in store.clients().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    shown(&client.client_id),
                    if client.confidential {
                        "confidential"
                    } else {
                        "public"
                    },
                    uris(&client.redirect_uris),
                    uris(&client.post_logout_redirect_uris)
                );
            }
            Ok(())
        }
        ClientCommand::Remove { id } => {
            if store.remove_client(&id).await? {
                println!("removed client {}", shown(&id));
                Ok(())
            } else {
                Err(Failure::Input(format!("no client with id {}", shown(&id))))
            }
        }
    }
}

/// A refused registration, named by the flag that carried the value.
fn refused(e: ClientError) -> Failure {
    let flag = match e.field {
        "client_id" => "--id",
        "redirect_uri" => "--redirect-uri",
        "post_logout_redirect_uri" => "--post-logout-redirect-uri",
        other => other,
    };
    Failure::Input(format!("{flag}: {}", e.reason))
}

fn uris(list: &[String]) -> String {
    list.iter().map(|u| shown(u)).collect::<Vec<_>>().join(" ")
}
