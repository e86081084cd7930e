//! `auth-admin`: what an operator needs without the AWS console, on the store `AUTH_STORE` names
//! (`sqlite:PATH` or `dynamodb:TABLE`, with the same `AWS_*` environment as the functions).
//!
//! Exit status: 0 done; 1 bad input (an unknown name, an unreadable source, a bad argument);
//! 2 the store is unreachable or failing. Every failure is one line on stderr; nothing prints a
//! password hash.

mod import;
mod show;

use std::process::ExitCode;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use clap::{Parser, Subcommand};
use shared::config::{StoreConfig, parse_store};
use shared::store::admin::AdminStore;
use shared::store::{
    AccountStore, CounterStore, CredentialStore, Credentials, DynamoStore, SessionStore,
    SqliteStore, StoreError,
};
use shared::{clock, policy, throttle};

use crate::show::shown;

#[derive(Parser)]
#[command(name = "auth-admin", version, about, long_about = None)]
struct Cli {
    /// The store to act on, as the functions name it: sqlite:PATH or dynamodb:TABLE
    #[arg(long, env = "AUTH_STORE", value_name = "STORE")]
    store: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy every user of a users.db (the FastAPI tutorial's, or this service's) into the store;
    /// run it again to resume: users already there are skipped
    Import {
        /// The file to read (opened read-only)
        #[arg(long, value_name = "sqlite:PATH")]
        from: String,
    },
    /// List accounts a page at a time (SQLite: by name; DynamoDB: in the table's order):
    /// name, id, failed logins, full name, tab-separated
    List {
        /// Accounts per page
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Start after this account (the last name of the previous page)
        #[arg(long, value_name = "NAME")]
        after: Option<String>,
    },
    /// Show an account: id, names, failed logins, whether it is throttled, its session epoch
    Show { name: String },
    /// Clear an account's failed logins, ending any wait
    Unlock { name: String },
    /// End every session of an account (refresh tokens and access tokens checked by /me)
    Logout { name: String },
    /// Delete an account and end its sessions; the name becomes free
    Delete { name: String },
}

/// Why a command failed, which decides the exit status.
enum Failure {
    /// Bad input: exit 1.
    Input(String),
    /// The store is unreachable or failing: exit 2.
    Store(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e.to_string())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors are bad input (1), not clap's default 2, which here means the store.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(why)) => {
            eprintln!("auth-admin: {}", one_line(&why));
            ExitCode::from(1)
        }
        Err(Failure::Store(why)) => {
            eprintln!("auth-admin: {}", one_line(&why));
            ExitCode::from(2)
        }
    }
}

/// SDK and SQLite messages may span lines; the operator gets one.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let target = parse_store(&cli.store).map_err(|e| Failure::Input(e.to_string()))?;
    match target {
        StoreConfig::Sqlite(path) => {
            // Only an import may create a store: elsewhere a mistyped path is a missing store,
            // not a new empty one.
            if !matches!(cli.command, Command::Import { .. }) && !path.is_file() {
                return Err(Failure::Store(format!(
                    "cannot open sqlite:{}: no such file",
                    path.display()
                )));
            }
            let store = SqliteStore::open(&path).map_err(|e| {
                Failure::Store(format!("cannot open sqlite:{}: {e}", path.display()))
            })?;
            execute(&store, cli.command).await
        }
        StoreConfig::Dynamodb(table) => {
            // The functions' client, with longer waits: their 1.5 s per attempt keeps an answer
            // inside the Lambda timeout, but a batch job would rather wait for a busy table than
            // retry a write that may have landed. Connecting stays bounded at 1 s, so an
            // unreachable endpoint still fails fast, at the first request (none is made here).
            let config = shared::aws::load()
                .await
                .to_builder()
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(1))
                        .operation_attempt_timeout(Duration::from_secs(10))
                        .operation_timeout(Duration::from_secs(30))
                        .build(),
                )
                .build();
            let store = DynamoStore::new(&config, &table);
            execute(&store, cli.command).await
        }
    }
}

async fn execute<S>(store: &S, command: Command) -> Result<(), Failure>
where
    S: AdminStore + CredentialStore + SessionStore + AccountStore + CounterStore,
{
    match command {
        Command::Import { from } => {
            let path = match parse_store(&from) {
                Ok(StoreConfig::Sqlite(path)) => path,
                _ => return Err(Failure::Input("--from: expected sqlite:PATH".into())),
            };
            import::run(store, &path).await
        }
        Command::List { limit, after } => list(store, usize::from(limit), after).await,
        Command::Show { name } => {
            let user = credentials(store, &name).await?;
            // The full name is the one thing `Credentials` lacks.
            let full_name = store
                .account(&user.username_key)
                .await?
                .and_then(|a| a.full_name);
            let now = clock::now();
            let wait =
                throttle::account_wait(store, &user.username_key, &Default::default(), now).await?;
            print!("{}", show::account(&user, full_name.as_deref(), wait, now));
            Ok(())
        }
        Command::Unlock { name } => {
            let user = credentials(store, &name).await?;
            let wait = throttle::account_wait(
                store,
                &user.username_key,
                &Default::default(),
                clock::now(),
            )
            .await?;
            if user.failed_logins == 0 && user.last_failed_at.is_none() && wait.is_none() {
                println!("{} has no failed logins to clear", shown(&user.username));
                return Ok(());
            }
            // A successful login's reset, and the account-wide window's. (An address's own
            // schedule is kept per address and expires by itself within the hour.)
            store.record_success(&user, None).await?;
            store
                .reset_counter(&throttle::account_key(&user.username_key))
                .await?;
            let waited = match wait {
                Some(wait) => format!(" and a wait of {wait} s more"),
                None => String::new(),
            };
            println!(
                "unlocked {}: cleared {} failed logins{waited}",
                shown(&user.username),
                user.failed_logins
            );
            Ok(())
        }
        Command::Logout { name } => {
            let user = credentials(store, &name).await?;
            match store.end_all_sessions(&user.id, &user.username_key).await? {
                Some(_) => {
                    println!("ended every session of {}", shown(&user.username));
                    Ok(())
                }
                None => Err(unknown(&name)),
            }
        }
        Command::Delete { name } => {
            let user = credentials(store, &name).await?;
            if store.delete_account(&user).await? {
                println!("deleted {} (id {})", shown(&user.username), user.id);
                Ok(())
            } else {
                Err(unknown(&name))
            }
        }
    }
}

fn unknown(name: &str) -> Failure {
    Failure::Input(format!("no user named {}", shown(name)))
}

/// The account `name` finds at login (its case-insensitive key), or exit 1.
async fn credentials<S: CredentialStore>(store: &S, name: &str) -> Result<Credentials, Failure> {
    store
        .credentials(&policy::username_key(name))
        .await?
        .ok_or_else(|| unknown(name))
}

async fn list<S: AdminStore>(
    store: &S,
    limit: usize,
    after: Option<String>,
) -> Result<(), Failure> {
    let after = after.map(|name| policy::username_key(&name));
    // One more than shown: whether another page follows, without a second request.
    let mut page = store.accounts(after.as_deref(), limit + 1).await?;
    let more = page.len() > limit;
    page.truncate(limit);
    for account in &page {
        println!(
            "{}\t{}\t{}\t{}",
            shown(&account.username),
            account.id,
            account.failed_logins,
            account.full_name.as_deref().map(shown).unwrap_or_default()
        );
    }
    if let Some(last) = page.last().filter(|_| more) {
        eprintln!(
            "more: auth-admin list --limit {limit} --after {}",
            shell_word(&last.username)
        );
    }
    Ok(())
}

/// `name` as one shell word to paste (usernames hold no whitespace, but may hold quotes); one
/// with characters a terminal would not show is printed escaped instead.
fn shell_word(name: &str) -> String {
    if !show::is_visible(name) {
        shown(name)
    } else if name
        .chars()
        .all(|c| c.is_alphanumeric() || "-_.@+".contains(c))
    {
        name.to_string()
    } else {
        format!("'{}'", name.replace('\'', r"'\''"))
    }
}
