//! `auth-admin import --from sqlite:PATH`: every user of a FastAPI-tutorial `users.db` (or of one
//! of this service's SQLite stores) into the configured store, hashes as they are (legacy `$2b$`
//! hashes verify, and each is upgraded at its user's next login).
//!
//! It first reads every stored account (never a hash), then writes each user that is not there
//! yet with one conditional write, so nothing stored is ever overwritten, and an import is resumed
//! by running it again. What a row becomes:
//! - **refused** before any write: a name the registration policy refuses (whitespace, control
//!   or invisible characters, mixed scripts, length), a row without a hash, a name that differs
//!   from an earlier row's only by case or width (the same key), or one whose confusable skeleton
//!   (Unicode UTS 39, e.g. Cyrillic `сосо` and Latin `coco`) equals that of an earlier row or of
//!   a stored account under another key. The first of two rows wins, in `rowid` order, which is the order
//!   the tutorial's app registered them;
//! - **skipped** when the account under its key has the id this import gives the row: an earlier
//!   run wrote it (found by the first read, or by the conditional write if it appeared since);
//! - **refused** when another account holds the key (likewise);
//! - **imported** when its key was free.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use shared::clock;
use shared::policy;
use shared::store::NewUser;
use shared::store::admin::{Account, AdminStore, Imported, SourceUser, UserSource};

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

/// Which names the import has met, to settle rows before writing.
#[derive(Default)]
struct Names {
    /// Stored account key → its id and name.
    stored: HashMap<String, (String, String)>,
    /// Key → the first source name with it.
    keys: HashMap<String, String>,
    /// Confusable skeleton of a key → that key and its name (stored accounts and source rows).
    skeletons: HashMap<String, (String, String)>,
}

/// What to do with a source row.
enum Verdict {
    /// Write it (conditionally).
    Write(NewUser),
    /// Stored already, by an earlier run.
    Skip,
    /// Report it: the name as found and why.
    Refuse(String, String),
}

fn taken_by(holder: &str) -> String {
    format!("the name is taken by the stored account {}", shown(holder))
}

fn skeleton(key: &str) -> String {
    unicode_security::skeleton(key).collect()
}

impl Names {
    /// Remembers a stored account: a row under its key is skipped (same id) or refused (another),
    /// one that looks like it under another key is refused.
    fn stored(&mut self, account: &Account) {
        let (key, name) = (&account.username_key, &account.username);
        self.skeletons
            .entry(skeleton(key))
            .or_insert_with(|| (key.clone(), name.clone()));
        self.stored
            .insert(key.clone(), (account.id.clone(), name.clone()));
    }

    /// What to do with `row`.
    fn screen(&mut self, row: SourceUser) -> Verdict {
        match self.check(row) {
            Ok(user) => match self.stored.get(&user.username_key) {
                Some((id, _)) if *id == user.id => Verdict::Skip,
                Some((_, holder)) => Verdict::Refuse(user.username, taken_by(holder)),
                None => Verdict::Write(user),
            },
            Err((name, why)) => Verdict::Refuse(name, why),
        }
    }

    /// The user `row` makes, or the name to report and why it is refused.
    fn check(&mut self, row: SourceUser) -> Result<NewUser, (String, String)> {
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
            email: None,
        })
    }
}

/// Stored accounts read per [`AdminStore::accounts`] call before importing. Large: moto evaluates
/// its whole table for every Scan page, and DynamoDB ends a page at 1 MB whatever it is asked.
const STORED_PAGE: usize = 100_000;

/// Imports every row of the file at `path` into `store`, printing the report.
pub async fn run<S: AdminStore>(store: &S, path: &Path) -> Result<(), Failure> {
    let source_error = |e: shared::store::admin::SourceError| {
        Failure::Input(format!("cannot read sqlite:{}: {e}", path.display()))
    };
    let source = UserSource::open(path).map_err(source_error)?;
    let total = source.count().map_err(source_error)?;

    // Every stored account, without the hashes: a row imitating one is refused, and a re-run
    // settles the rows an earlier run wrote without writing again (one read of the store instead
    // of a refused conditional write per user).
    let mut names = Names::default();
    let mut after: Option<String> = None;
    loop {
        let page = store.accounts(after.as_deref(), STORED_PAGE).await?;
        for account in &page {
            names.stored(account);
        }
        match page.last() {
            Some(last) => after = Some(last.username_key.clone()),
            None => break,
        }
    }

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40} {pos}/{len} users, {elapsed} so far, {eta} left ({msg})",
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
                Verdict::Write(user) => batch.push(user),
                Verdict::Skip => report.skipped += 1,
                Verdict::Refuse(name, why) => report.refused.push((name, why)),
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
                Imported::Taken(holder) => report.refused.push((user.username, taken_by(&holder))),
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

    fn stored(id: &str, name: &str) -> Account {
        Account {
            id: id.into(),
            username: name.into(),
            username_key: policy::username_key(name),
            full_name: None,
            failed_logins: 0,
            last_failed_at: None,
            session_epoch: 0,
        }
    }

    #[test]
    fn collisions_by_case_and_look_alikes_are_refused_first_row_wins() {
        let mut names = Names::default();
        names.stored(&stored("pop-id", "pop"));
        let Verdict::Write(alice) = names.screen(row(1, "Alice")) else {
            panic!("Alice is written")
        };
        assert_eq!(
            (alice.username.as_str(), alice.username_key.as_str()),
            ("Alice", "alice")
        );
        assert_eq!(alice.id, tutorial_user_id("Alice"));
        assert!(matches!(names.screen(row(2, "coco")), Verdict::Write(_)));
        let mut check = |r: SourceUser, why: &str| match names.screen(r) {
            Verdict::Refuse(_, reason) => assert!(reason.contains(why), "{reason}"),
            _ => panic!("expected a refusal: {why}"),
        };
        check(row(3, "alice"), "but for case");
        // Mixed scripts are the registration policy's to refuse; whole-script look-alikes are
        // the skeleton's: Cyrillic "сосо" and "рор".
        check(row(4, "\u{430}lice"), "one script");
        check(row(5, "\u{441}\u{43e}\u{441}\u{43e}"), "looks like coco");
        check(row(6, "\u{440}\u{43e}\u{440}"), "looks like pop");
        check(row(7, "al ice"), "whitespace");
        check(row(8, "ab"), "3 to 64");
        check(
            SourceUser {
                password_hash: None,
                ..row(9, "carol")
            },
            "no password hash",
        );
        // The stored Pop is another account than the tutorial's pop.
        check(row(10, "Pop"), "taken by the stored account pop");
    }

    #[test]
    fn rows_an_earlier_run_stored_are_skipped_without_a_write() {
        let mut names = Names::default();
        names.stored(&stored(&tutorial_user_id("emma"), "emma"));
        assert!(matches!(names.screen(row(1, "emma")), Verdict::Skip));
    }

    #[test]
    fn rows_of_our_own_files_keep_their_ids() {
        let mut names = Names::default();
        let Verdict::Write(user) = names.screen(SourceUser {
            user_id: Some("0123abcd".into()),
            ..row(1, "emma")
        }) else {
            panic!("emma is written")
        };
        assert_eq!(user.id, "0123abcd");
        assert_eq!(tutorial_user_id("emma").len(), 32);
        assert_ne!(tutorial_user_id("emma"), tutorial_user_id("Emma"));
    }
}
