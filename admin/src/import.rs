//! `auth-admin import --from sqlite:PATH`: every user of a FastAPI-tutorial `users.db` (or of one
//! of this service's SQLite stores) into the configured store, hashes as they are (legacy `$2b$`
//! hashes verify, and each is upgraded at its user's next login).
//!
//! Each user is one conditional write, so nothing stored is ever overwritten, and an import is
//! resumed by running it again. What a row becomes:
//! - **refused** before any write: a name the registration policy refuses (whitespace, control
//!   or invisible characters, length), a row without a hash, a name that differs from an earlier
//!   row's only by case or width (the same key), or one whose confusable skeleton (Unicode
//!   UTS 39, e.g. Cyrillic `аlice` and Latin `alice`) equals that of an earlier row or of a stored
//!   account under another key. The first of two rows wins, in `rowid` order, which is the order
//!   the tutorial's app registered them;
//! - **imported** when its key was free;
//! - **skipped** when the account under its key has the id this import gives the row: an earlier
//!   run wrote it;
//! - **refused** when another account holds the key.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use shared::clock;
use shared::policy;
use shared::store::NewUser;
use shared::store::admin::{AdminStore, Imported, SourceUser, UserSource};

use crate::Failure;
use crate::show::shown;

/// The id of a tutorial user, which has none: derived from the name, so a re-run gives the row
/// the same id and can tell "an earlier run stored it" (same id: skipped) from "another account
/// holds the name" (another id: refused), even after the user's first login has replaced the
/// hash. Comparing hashes could not: the upgrade at login changes them. Rows of this service's
/// own files keep their random `user_id`. 32 hex digits, like the ids registration makes.
pub fn tutorial_user_id(username: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"auth-admin import\0")
        .chain_update(username.as_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Counts and refusals (name as found, why), in source order.
#[derive(Debug, Default)]
struct Report {
    imported: u64,
    skipped: u64,
    refused: Vec<(String, String)>,
}

impl Report {
    fn counts(&self) -> String {
        format!(
            "imported {}, skipped {}, refused {}",
            self.imported,
            self.skipped,
            self.refused.len()
        )
    }
}

/// Which names the import has met, to refuse collisions before writing.
#[derive(Default)]
struct Names {
    /// Key → the first source name with it.
    keys: HashMap<String, String>,
    /// Confusable skeleton of a key → that key and its name (stored accounts and source rows).
    skeletons: HashMap<String, (String, String)>,
}

fn skeleton(key: &str) -> String {
    unicode_security::skeleton(key).collect()
}

impl Names {
    /// Remembers a stored account: a row that looks like it under another key is refused.
    fn stored(&mut self, key: &str, name: &str) {
        self.skeletons
            .entry(skeleton(key))
            .or_insert_with(|| (key.to_string(), name.to_string()));
    }

    /// The user to write for `row`, or the name to report and why it is refused.
    fn screen(&mut self, row: SourceUser) -> Result<NewUser, (String, String)> {
        let Some(raw) = row.username else {
            return Err((format!("(row {})", row.row), "no username".into()));
        };
        let username = policy::username(&raw).map_err(|e| (raw.clone(), e.to_string()))?;
        let Some(password_hash) = row.password_hash.filter(|h| !h.is_empty()) else {
            return Err((raw, "no password hash".into()));
        };
        let full_name = policy::full_name(row.full_name.as_deref())
            .map_err(|e| (raw.clone(), e.to_string()))?;
        if let Some(first) = self.keys.get(&username.key) {
            return Err((raw, format!("same name as {} but for case", shown(first))));
        }
        let skeleton = skeleton(&username.key);
        if let Some((key, name)) = self.skeletons.get(&skeleton)
            && *key != username.key
        {
            return Err((raw, format!("looks like {}", shown(name))));
        }
        self.keys
            .insert(username.key.clone(), username.display.clone());
        self.skeletons
            .insert(skeleton, (username.key.clone(), username.display.clone()));
        Ok(NewUser {
            id: row
                .user_id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| tutorial_user_id(&username.display)),
            username: username.display,
            username_key: username.key,
            password_hash,
            full_name,
        })
    }
}

/// Imports every row of the file at `path` into `store`, printing the report.
pub async fn run<S: AdminStore>(store: &S, path: &Path) -> Result<(), Failure> {
    let source_error = |e: shared::store::admin::SourceError| {
        Failure::Input(format!("cannot read sqlite:{}: {e}", path.display()))
    };
    let source = UserSource::open(path).map_err(source_error)?;
    let total = source.count().map_err(source_error)?;

    // Every stored account's skeleton, so that a row imitating one is refused: a scan of the
    // store without the hashes, which on a re-run includes the earlier run's users (their own
    // keys, so no conflict).
    let mut names = Names::default();
    let mut after: Option<String> = None;
    loop {
        let page = store.accounts(after.as_deref(), 1000).await?;
        for account in &page {
            names.stored(&account.username_key, &account.username);
        }
        match page.last() {
            Some(last) => after = Some(last.username_key.clone()),
            None => break,
        }
    }

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40} {pos}/{len} users, {per_sec}, {eta} left ({msg})",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };

    // Imported accounts start at the import's time as their session epoch instead of 0: an
    // account deleted and then imported again gets its old (derived) id back, and its old
    // sessions, whose items DynamoDB keeps until their TTL, must stay ended.
    let epoch = clock::now();
    let mut report = Report::default();
    let mut last_row = 0;
    loop {
        let rows = source
            .page(last_row, S::IMPORT_BATCH)
            .map_err(source_error)?;
        let Some(last) = rows.last() else { break };
        last_row = last.row;
        let count = rows.len() as u64;
        let mut batch = Vec::with_capacity(rows.len());
        for row in rows {
            match names.screen(row) {
                Ok(user) => batch.push(user),
                Err(refusal) => report.refused.push(refusal),
            }
        }
        let outcomes = match store.import(&batch, epoch).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                progress.abandon();
                println!(
                    "stopped: {} so far; run it again to resume",
                    report.counts()
                );
                return Err(e.into());
            }
        };
        for (user, outcome) in batch.into_iter().zip(outcomes) {
            match outcome {
                Imported::Created => report.imported += 1,
                Imported::AlreadyThere => report.skipped += 1,
                Imported::Taken(holder) => report.refused.push((
                    user.username,
                    format!("the name is taken by the stored account {}", shown(&holder)),
                )),
            }
        }
        progress.inc(count);
        progress.set_message(report.counts());
    }
    progress.finish_and_clear();

    println!(
        "{} (of {total} users in {})",
        report.counts(),
        path.display()
    );
    for (name, why) in &report.refused {
        println!("refused {}: {why}", shown(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(row: i64, name: &str) -> SourceUser {
        SourceUser {
            row,
            username: Some(name.into()),
            password_hash: Some("$2b$12$hash".into()),
            full_name: None,
            user_id: None,
        }
    }

    #[test]
    fn collisions_by_case_and_look_alikes_are_refused_first_row_wins() {
        let mut names = Names::default();
        names.stored("bob", "Bob");
        let alice = names.screen(row(1, "Alice")).unwrap();
        assert_eq!(
            (alice.username.as_str(), alice.username_key.as_str()),
            ("Alice", "alice")
        );
        assert_eq!(alice.id, tutorial_user_id("Alice"));
        let mut check = |r: SourceUser, why: &str| {
            let (_, reason) = names.screen(r).unwrap_err();
            assert!(reason.contains(why), "{reason}");
        };
        check(row(2, "alice"), "but for case");
        check(row(3, "\u{430}lice"), "looks like Alice");
        check(row(4, "B\u{43e}b"), "looks like Bob");
        check(row(5, "al ice"), "whitespace");
        check(row(6, "ab"), "3 to 64");
        check(
            SourceUser {
                password_hash: None,
                ..row(7, "carol")
            },
            "no password hash",
        );
        // A stored account's own name is no conflict (a re-run).
        assert!(names.screen(row(8, "bob")).is_ok());
    }

    #[test]
    fn rows_of_our_own_files_keep_their_ids() {
        let mut names = Names::default();
        let user = names
            .screen(SourceUser {
                user_id: Some("0123abcd".into()),
                ..row(1, "emma")
            })
            .unwrap();
        assert_eq!(user.id, "0123abcd");
        assert_eq!(tutorial_user_id("emma").len(), 32);
        assert_ne!(tutorial_user_id("emma"), tutorial_user_id("Emma"));
    }
}
