//! `auth-admin`: what an operator needs without the AWS console, on the store `AUTH_STORE` names
//! (`sqlite:PATH` or `dynamodb:TABLE`, with the same `AWS_*` environment as the functions):
//! accounts, and the OAuth clients of the OpenID Connect provider (`client`).
//!
//! Exit status: 0 done; 1 bad input (an unknown name or client, an unreadable source, a bad
//! argument, a client registration the rules refuse);
//! 2 the store is unreachable or failing. Every failure is one line on stderr; nothing prints a
//! password hash.

mod client;
mod import;
mod show;

use std::process::ExitCode;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use shared::config::{ConfigError, StoreConfig, parse_store};
use shared::store::admin::AdminStore;
use shared::store::{
    AccountStore, ClientStore, CounterStore, CredentialStore, Credentials, DynamoStore, MfaStore,
    SessionStore, SqliteStore, StoreError,
};
use shared::{clock, policy, throttle};

use crate::show::shown;

#[derive(Parser)]
#[command(name = "auth-admin", version, about, long_about = None)]
struct Cli {
    /// The store to act on, as the functions name it: sqlite:PATH or dynamodb:TABLE
    #[arg(long, env = "AUTH_STORE", value_name = "STORE")]
    store: String,
    /// Where `store` came from (the command line or `AUTH_STORE`), for naming it in an error.
    #[arg(skip)]
    store_source: Option<ValueSource>,
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
    /// Register, list and remove OAuth clients (the OpenID Connect provider's applications)
    Client {
        #[command(subcommand)]
        command: client::ClientCommand,
    },
    /// Second factors: `mfa reset USER` turns TOTP off (a lost device) and ends every session
    Mfa {
        #[command(subcommand)]
        command: MfaCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum MfaCommand {
    /// Turn the account's TOTP off (its recovery codes go too) and end every session, so the
    /// owner signs in with the password alone and enrols again
    Reset { name: String },
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

/// `Cli::try_parse_from`, also recording where `--store`'s value came from.
fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut Cli::command()))?;
    cli.store_source = matches.value_source("store");
    Ok(cli)
}

/// The functions' parser names `AUTH_STORE`: right when the value came from there, but a bad
/// `--store` on the command line is named as such.
fn bad_store(e: ConfigError, source: Option<ValueSource>) -> Failure {
    match source {
        Some(ValueSource::CommandLine) => Failure::Input(format!("--store: {}", e.reason)),
        _ => Failure::Input(e.to_string()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match parse_args(std::env::args_os()) {
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
    let target = parse_store(&cli.store).map_err(|e| bad_store(e, cli.store_source))?;
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
    S: AdminStore
        + CredentialStore
        + SessionStore
        + AccountStore
        + CounterStore
        + ClientStore
        + MfaStore,
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
            let waits = waits(store, &user, now).await?;
            print!(
                "{}",
                show::account(&user, full_name.as_deref(), &waits, now)
            );
            Ok(())
        }
        Command::Unlock { name } => {
            let user = credentials(store, &name).await?;
            let now = clock::now();
            let waits = waits(store, &user, now).await?;
            // The hourly window may hold failures below the ceiling after a success reset the
            // consecutive count: those are cleared too.
            let subject = throttle::subject(Some(&user), &user.username_key);
            let window = store
                .counters(&[&throttle::account_key(&subject)], now)
                .await?[0]
                .filter(|w| w.failures > 0);
            if user.failed_logins == 0
                && user.last_failed_at.is_none()
                && waits.is_empty()
                && window.is_none()
            {
                println!("{} has no failed logins to clear", shown(&user.username));
                return Ok(());
            }
            // A successful login's reset, the account-wide window's, and every address's own
            // schedule against the account: the owner's next correct login passes from anywhere.
            store.record_success(&user, None).await?;
            let subject = throttle::subject(Some(&user), &user.username_key);
            store
                .reset_counter(&throttle::account_key(&subject))
                .await?;
            for (key, _) in store.pair_counters(&subject, now).await? {
                store.reset_counter(&key).await?;
            }
            let waited = match waits.iter().map(|w| w.seconds).max() {
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
        Command::Client { command } => client::run(store, command).await,
        Command::Mfa {
            command: MfaCommand::Reset { name },
        } => {
            let user = credentials(store, &name).await?;
            if !store.disable_totp(&user).await? {
                println!("{} has no second factor", shown(&user.username));
                return Ok(());
            }
            store.end_all_sessions(&user.id, &user.username_key).await?;
            println!(
                "turned TOTP off for {} and ended every session",
                shown(&user.username)
            );
            Ok(())
        }
    }
}

/// Every wait that applies to `user`'s logins at `now`: the account-wide ceiling (read with the
/// functions' own `AUTH_ACCOUNT_FAILURES_PER_HOUR`) and each address's schedule.
async fn waits<S: AdminStore + CounterStore>(
    store: &S,
    user: &Credentials,
    now: u64,
) -> Result<Vec<show::Wait>, Failure> {
    let lookup = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let limits =
        shared::config::throttle_limits(&lookup).map_err(|e| Failure::Input(e.to_string()))?;
    let subject = throttle::subject(Some(user), &user.username_key);
    let mut waits = Vec::new();
    if let Some(seconds) = throttle::account_wait(store, &subject, &limits, now).await? {
        waits.push(show::Wait {
            from: None,
            seconds,
        });
    }
    for (key, counter) in store.pair_counters(&subject, now).await? {
        let source = throttle::parse_pair_key(&key).map(|(source, _)| source.to_string());
        if let Some(seconds) = throttle::pair_wait(Some(counter), now) {
            waits.push(show::Wait {
                from: source,
                seconds,
            });
        }
    }
    Ok(waits)
}

fn unknown(name: &str) -> Failure {
    Failure::Input(format!("no user named {}", shown(name)))
}

/// The account `name` finds at login (its case-insensitive key), or exit 1.
async fn credentials<S: CredentialStore>(store: &S, name: &str) -> Result<Credentials, Failure> {
    store
        .credentials(&policy::login_key(name))
        .await?
        .ok_or_else(|| unknown(name))
}

async fn list<S: AdminStore>(
    store: &S,
    limit: usize,
    after: Option<String>,
) -> Result<(), Failure> {
    let after = after.map(|name| policy::login_key(&name));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store_failure(cli: &Cli) -> String {
        match parse_store(&cli.store).map_err(|e| bad_store(e, cli.store_source)) {
            Err(Failure::Input(why)) => why,
            Err(Failure::Store(why)) => panic!("a bad store setting is bad input, not {why}"),
            Ok(_) => panic!("{} parsed", cli.store),
        }
    }

    #[test]
    fn a_bad_store_flag_is_named_as_the_flag() {
        for (value, reason) in [
            ("postgres:x", "expected sqlite:PATH or dynamodb:TABLE"),
            ("dynamodb:x", "dynamodb table names are 3-255 characters"),
        ] {
            let cli = parse_args(["auth-admin", "--store", value, "list"]).unwrap();
            assert_eq!(cli.store_source, Some(ValueSource::CommandLine));
            let why = store_failure(&cli);
            assert!(why.starts_with(&format!("--store: {reason}")), "{why}");
            assert!(!why.contains("AUTH_STORE"), "{why}");
        }
        let cli = parse_args(["auth-admin", "--store=sqlite:", "list"]).unwrap();
        assert_eq!(
            store_failure(&cli),
            "--store: expected sqlite:PATH or dynamodb:TABLE"
        );
    }

    #[test]
    fn a_bad_store_from_the_environment_is_named_as_the_variable() {
        let e = parse_store("postgres:x").unwrap_err();
        match bad_store(e, Some(ValueSource::EnvVariable)) {
            Failure::Input(why) => assert_eq!(
                why,
                "invalid configuration: AUTH_STORE: expected sqlite:PATH or dynamodb:TABLE"
            ),
            Failure::Store(why) => panic!("bad input, not {why}"),
        }
    }

    #[test]
    fn client_add_takes_repeated_uris_and_no_redirect_uri_is_left_to_the_rules() {
        let cli = parse_args([
            "auth-admin",
            "--store=sqlite:users.db",
            "client",
            "add",
            "--id",
            "web",
            "--redirect-uri",
            "https://a.example/cb",
            "--redirect-uri",
            "http://127.0.0.1:8080/callback",
            "--post-logout-redirect-uri",
            "https://a.example/bye",
            "--confidential",
        ])
        .unwrap();
        match cli.command {
            Command::Client {
                command:
                    client::ClientCommand::Add {
                        id,
                        redirect_uris,
                        post_logout_redirect_uris,
                        confidential,
                    },
            } => {
                assert_eq!(id, "web");
                assert_eq!(
                    redirect_uris,
                    ["https://a.example/cb", "http://127.0.0.1:8080/callback"]
                );
                assert_eq!(post_logout_redirect_uris, ["https://a.example/bye"]);
                assert!(confidential);
            }
            _ => panic!("not client add"),
        }
        // Without a redirect URI clap still parses: the domain refuses it, in one line.
        let cli = parse_args([
            "auth-admin",
            "--store=sqlite:x",
            "client",
            "add",
            "--id",
            "w",
        ]);
        assert!(cli.is_ok());
    }

    #[test]
    fn a_good_store_flag_parses() {
        let cli = parse_args(["auth-admin", "--store", "sqlite:users.db", "show", "emma"]).unwrap();
        assert!(matches!(
            parse_store(&cli.store),
            Ok(StoreConfig::Sqlite(_))
        ));
        assert!(matches!(cli.command, Command::Show { ref name } if name == "emma"));
    }
}
