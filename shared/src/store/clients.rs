//! Registered OAuth clients ([`Client`]): stored, so that registering one needs no redeploy.
//! `auth-admin client` puts, lists and removes them; the provider's endpoints will read one by
//! its id. The trait, then the SQLite and the DynamoDB implementation.

use std::future::Future;

use aws_sdk_dynamodb::types::AttributeValue;
use rusqlite::{OptionalExtension, params};

use super::StoreError;
use super::dynamodb::{
    CLIENT_PREFIX, DynamoStore, Item, KEY, applied, client_key, get_s, n, required_n, s,
};
use super::sqlite::{SqliteStore, classify, int, uint};
use crate::oauth::Client;
use crate::oauth::client::is_client_id;

/// Storing and reading registered clients.
pub trait ClientStore: Send + Sync {
    /// Stores `client`; [`StoreError::Duplicate`] when its id is registered already (the
    /// stored one is kept).
    fn put_client(&self, client: &Client) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The client registered as `client_id` (exactly: ids are case-sensitive), if any; `None`
    /// without a lookup for a string that is no client id.
    fn client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Client>, StoreError>> + Send;

    /// Every registered client, ordered by id. On DynamoDB a `Scan` of the whole table: for the
    /// operator, never a function.
    fn clients(&self) -> impl Future<Output = Result<Vec<Client>, StoreError>> + Send;

    /// Removes the client `client_id`; whether it was there (never, for a string that is no
    /// client id).
    fn remove_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

// SQLite: the `clients` table, the URI lists as JSON arrays.

const CLIENT_COLUMNS: &str = "SELECT client_id, redirect_uris, post_logout_redirect_uris,
     confidential, secret_hash, created_at FROM clients";

fn client_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Client> {
    let uris = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = r.get(i)?;
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    Ok(Client {
        client_id: r.get(0)?,
        redirect_uris: uris(1)?,
        post_logout_redirect_uris: uris(2)?,
        confidential: r.get(3)?,
        secret_hash: r.get(4)?,
        created_at: uint(r.get(5)?),
    })
}

fn json(uris: &[String]) -> String {
    serde_json::to_string(uris).expect("a list of strings always serialises")
}

impl ClientStore for SqliteStore {
    async fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        // The primary key refuses a taken id (classified as Duplicate): no read before the write.
        self.lock()
            .execute(
                "INSERT INTO clients (client_id, redirect_uris, post_logout_redirect_uris,
                     confidential, secret_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    client.client_id,
                    json(&client.redirect_uris),
                    json(&client.post_logout_redirect_uris),
                    client.confidential,
                    client.secret_hash,
                    int(client.created_at),
                ],
            )
            .map(|_| ())
            .map_err(classify)
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        if !is_client_id(client_id) {
            return Ok(None);
        }
        // Every authorization request and code exchange looks its client up: the compiled
        // statement is kept.
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(&format!("{CLIENT_COLUMNS} WHERE client_id = ?1"))
            .map_err(classify)?;
        select
            .query_row([client_id], client_row)
            .optional()
            .map_err(classify)
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(&format!("{CLIENT_COLUMNS} ORDER BY client_id"))
            .map_err(classify)?;
        select
            .query_map([], client_row)
            .map_err(classify)?
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn remove_client(&self, client_id: &str) -> Result<bool, StoreError> {
        if !is_client_id(client_id) {
            return Ok(false);
        }
        let removed = self
            .lock()
            .execute("DELETE FROM clients WHERE client_id = ?1", [client_id])
            .map_err(classify)?;
        Ok(removed == 1)
    }
}

// DynamoDB: `#client <id>` items without a TTL; the URI lists as lists of strings.

fn uri_list(uris: &[String]) -> AttributeValue {
    AttributeValue::L(uris.iter().map(|u| s(u)).collect())
}

fn required_list(item: &Item, name: &str) -> Result<Vec<String>, StoreError> {
    let fault = || StoreError::Fault(format!("item lacks a list of strings {name}"));
    item.get(name)
        .and_then(|v| v.as_l().ok())
        .ok_or_else(fault)?
        .iter()
        .map(|v| v.as_s().cloned().map_err(|_| fault()))
        .collect()
}

fn client_item(item: &Item) -> Result<Client, StoreError> {
    let key = get_s(item, KEY).unwrap_or_default();
    let client_id = key
        .strip_prefix(CLIENT_PREFIX)
        .ok_or_else(|| StoreError::Fault(format!("{key:?} is no client key")))?;
    Ok(Client {
        client_id: client_id.to_string(),
        redirect_uris: required_list(item, "redirect_uris")?,
        post_logout_redirect_uris: required_list(item, "post_logout_redirect_uris")?,
        confidential: item
            .get("confidential")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .ok_or_else(|| StoreError::Fault("item lacks confidential".into()))?,
        secret_hash: get_s(item, "secret_hash"),
        created_at: required_n(item, "created_at")?,
    })
}

impl ClientStore for DynamoStore {
    async fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, client_key(&client.client_id))
            .item("redirect_uris", uri_list(&client.redirect_uris))
            .item(
                "post_logout_redirect_uris",
                uri_list(&client.post_logout_redirect_uris),
            )
            .item("confidential", AttributeValue::Bool(client.confidential))
            .item("created_at", n(client.created_at))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY);
        if let Some(hash) = &client.secret_hash {
            put = put.item("secret_hash", s(hash));
        }
        applied(put.send().await)?
            .map(|_| ())
            .ok_or(StoreError::Duplicate)
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        if !is_client_id(client_id) {
            return Ok(None);
        }
        self.get(client_key(client_id))
            .await?
            .as_ref()
            .map(client_item)
            .transpose()
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let items = self
            .scan_all(
                "begins_with(#k, :p)",
                &[("#k", KEY)],
                &[(":p", s(CLIENT_PREFIX))],
            )
            .await?;
        let mut found = items
            .iter()
            .map(client_item)
            .collect::<Result<Vec<_>, _>>()?;
        // Byte order, as SQLite's `ORDER BY` sorts text.
        found.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(found)
    }

    async fn remove_client(&self, client_id: &str) -> Result<bool, StoreError> {
        if !is_client_id(client_id) {
            return Ok(false);
        }
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, client_key(client_id))
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", KEY)
            .send()
            .await;
        Ok(applied(out)?.is_some())
    }
}
