//! `auth-admin`, the built binary run as an operator would, on an SQLite file and on a DynamoDB
//! table on moto; stored state is checked through the stores (and their test seam), logins
//! through the real login handler.
//!
//! `cargo test -p integration-tests --test admin -- --ignored --nocapture import_100k` times an
//! import of 100,000 users into each backend (the README's figures).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use integration_tests::{event, moto, nested_cargo, write_test_keys};
use serde_json::{Value, json};
use shared::Config;
use shared::oauth::{Client, Registration};
use shared::password::{PasswordHasher, Verification};
use shared::policy::username_key;
use shared::session::{self, SessionLimits};
use shared::store::admin::{AdminStore, write_tutorial_db};
use shared::store::contract::FullStore;
use shared::store::testing::TestSeam;
use shared::store::{Counter, CredentialStore, DynamoStore, SqliteStore, Swap};
use shared::throttle;
use shared::wiring::Wiring;

/// The tutorial's password of the users below (bcrypt cost 4 keeps the test fast).
const PASSWORD: &str = "tutorial-secret";

/// The `auth-admin` binary, built once by a nested `cargo build` that names it (whatever the
/// target folder or profile), so the tests never run a stale copy.
fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let out = nested_cargo()
            .args(["build", "-p", "auth-admin", "--bin", "auth-admin"])
            .arg("--message-format=json-render-diagnostics")
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build");
        assert!(out.status.success(), "cargo build -p auth-admin failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "auth-admin")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the auth-admin executable")
    })
}

/// One run of the binary.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:?}");
        &self.stdout
    }

    /// Asserts exit status `code` with exactly one line on stderr and nothing that looks like a
    /// panic or a backtrace; returns that line.
    fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:?}");
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("backtrace"),
            "{self:?}"
        );
        self.stderr.trim_end()
    }
}

/// A store for the binary to act on, a handle on it for the test, and the environment naming it.
struct Target<S> {
    dir: tempfile::TempDir,
    store: S,
    open: Box<dyn Fn() -> S>,
    env: Vec<(&'static str, String)>,
}

/// A fresh SQLite file.
fn sqlite() -> Target<SqliteStore> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    let store = SqliteStore::open(&path).unwrap();
    Target {
        env: vec![("AUTH_STORE", format!("sqlite:{}", path.display()))],
        open: Box::new(move || SqliteStore::open(&path).unwrap()),
        store,
        dir,
    }
}

/// A fresh table on moto.
async fn dynamodb() -> Target<DynamoStore> {
    let config = moto::sdk_config().await;
    let table = moto::create_users_table(&config).await;
    let store = DynamoStore::new(&config, &table);
    let mut env = moto::process_env();
    env.push(("AUTH_STORE", format!("dynamodb:{table}")));
    Target {
        dir: tempfile::tempdir().unwrap(),
        open: Box::new({
            let store = store.clone();
            move || store.clone()
        }),
        store,
        env,
    }
}

impl<S> Target<S> {
    /// Runs `auth-admin ARGS` with only this target's environment (no stray `AWS_*` or
    /// `AUTH_*` of the machine).
    fn admin(&self, args: &[&str]) -> Run {
        run(&self.env, args)
    }

    /// A tutorial `users.db` in this target's folder holding `users` (name, full name), all with
    /// the hash of [`PASSWORD`] (the tutorial's plain bcrypt).
    fn tutorial_db(&self, name: &str, users: &[(&str, Option<&str>)]) -> (PathBuf, String) {
        let path = self.dir.path().join(name);
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        write_tutorial_db(
            &path,
            users
                .iter()
                .map(|(user, full)| (user.to_string(), hash.clone(), full.map(str::to_string))),
        );
        (path, hash)
    }
}

fn run(env: &[(&str, String)], args: &[&str]) -> Run {
    let out = Command::new(binary())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .output()
        .expect("run auth-admin");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn from(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

/// The tutorial's users, with a name that collides by case, one that looks like another
/// (Cyrillic `сосо`, `coco` in Latin), and two the registration policy refuses (a Cyrillic `а` in
/// a Latin name, too short): four imported, four refused.
const TUTORIAL: &[(&str, Option<&str>)] = &[
    ("johndoe", Some("John Doe")),
    ("Alice", Some("Alice Example")),
    ("alice", None),
    ("\u{430}lice", None),
    ("coco", None),
    ("\u{441}\u{43e}\u{441}\u{43e}", None),
    ("jo", None),
    ("carol", None),
];

async fn import_is_idempotent_and_refuses_collisions<S>(t: Target<S>)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    let (source, hash) = t.tutorial_db("tutorial.db", TUTORIAL);
    let before = std::fs::read(&source).unwrap();
    let out = t.admin(&["import", "--from", &from(&source)]);
    let report = out.ok();
    assert!(
        report.starts_with("imported 4, skipped 0, refused 4 (of 8 users in"),
        "{report}"
    );
    for line in [
        "refused alice: same name as Alice but for case",
        "refused \u{430}lice [\\u{430}lice]: username: must be written in one script",
        "refused \u{441}\u{43e}\u{441}\u{43e} [\\u{441}\\u{43e}\\u{441}\\u{43e}]: looks like coco",
        "refused jo: username: must be 3 to 64 characters long",
    ] {
        assert!(report.contains(line), "{line:?} in {report}");
    }
    assert_eq!(std::fs::read(&source).unwrap(), before, "source untouched");
    assert_eq!(t.store.user_count().await, 4);
    let (stored, failures) = t.store.stored("johndoe").await.unwrap();
    assert_eq!(
        (stored.as_str(), failures),
        (hash.as_str(), 0),
        "hash copied as is"
    );
    assert_eq!(
        PasswordHasher::new(4).verify(PASSWORD, &stored),
        Verification::Match { needs_rehash: true }
    );
    let alice = t.store.credentials("alice").await.unwrap().unwrap();
    assert_eq!(alice.username, "Alice", "the first of the colliding rows");

    // An imported user logs in through the real handler, which upgrades the hash.
    let keys = write_test_keys(t.dir.path());
    let vars = [
        ("AUTH_SIGNING_KEY", format!("file:{}", keys.0.display())),
        ("AUTH_BCRYPT_COST", "4".into()),
    ];
    let config =
        Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let login = Wiring::new(config).login((t.open)()).await.unwrap();
    let answer = shared::handlers::login::handle(
        &login,
        event(
            "v2_login_json",
            &[("USERNAME", "johndoe"), ("PASSWORD", PASSWORD)],
        ),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let (upgraded, _) = t.store.stored("johndoe").await.unwrap();
    assert_ne!(upgraded, hash, "rehashed at login");

    // A re-run skips every user it wrote, upgraded hash or not, and refuses the same rows.
    let again = t.admin(&["import", "--from", &from(&source)]);
    let report = again.ok();
    assert!(
        report.starts_with("imported 0, skipped 4, refused 4"),
        "{report}"
    );
    assert_eq!(t.store.stored("johndoe").await.unwrap().0, upgraded);
    for run in [&out, &again] {
        assert!(!run.stdout.contains(&hash) && !run.stderr.contains(&hash));
        assert!(!run.stdout.contains("$2b$") && !run.stdout.contains("$bcrypt"));
    }
}

async fn a_name_held_by_another_account_is_refused_not_merged<S>(t: Target<S>)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    // Registered in the service before the import: another person, another id.
    t.store
        .seed_user("registered-id", "Carol", "$2b$04$other", None)
        .await;
    t.store
        .seed_user("registered-pop", "pop", "$2b$04$other", None)
        .await;
    let (source, _) = t.tutorial_db(
        "tutorial.db",
        &[
            ("carol", None),
            ("\u{440}\u{43e}\u{440}", None),
            ("dave", None),
        ],
    );
    let report = t
        .admin(&["import", "--from", &from(&source)])
        .ok()
        .to_string();
    assert!(
        report.starts_with("imported 1, skipped 0, refused 2"),
        "{report}"
    );
    assert!(
        report.contains("refused carol: the name is taken by the stored account Carol"),
        "{report}"
    );
    assert!(report.contains("looks like pop"), "{report}");
    let carol = t.store.credentials("carol").await.unwrap().unwrap();
    assert_eq!(carol.id, "registered-id", "not overwritten");
}

async fn an_import_from_one_of_our_files_keeps_the_ids<S>(t: Target<S>)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    let (source, _) = t.tutorial_db("ours.db", &[("emma", None), ("Frank", Some("F"))]);
    // Opening it as a store migrates it to this service's schema, with random ids.
    let ours = SqliteStore::open(&source).unwrap();
    let emma = ours.credentials("emma").await.unwrap().unwrap();
    drop(ours);
    let report = t
        .admin(&["import", "--from", &from(&source)])
        .ok()
        .to_string();
    assert!(
        report.starts_with("imported 2, skipped 0, refused 0"),
        "{report}"
    );
    let copied = t.store.credentials("emma").await.unwrap().unwrap();
    assert_eq!(copied.id, emma.id);
    let again = t
        .admin(&["import", "--from", &from(&source)])
        .ok()
        .to_string();
    assert!(again.starts_with("imported 0, skipped 2"), "{again}");
}

async fn list_pages_through_every_account_once<S>(t: Target<S>)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    let names: Vec<String> = (1..=7).map(|i| format!("user{i:02}")).collect();
    let rows: Vec<(&str, Option<&str>)> = names.iter().map(|n| (n.as_str(), None)).collect();
    let (source, _) = t.tutorial_db("tutorial.db", &rows);
    t.admin(&["import", "--from", &from(&source)]).ok();
    // A session and a throttle counter sit in the same DynamoDB table: they are no accounts.
    let now = shared::clock::now();
    let user = t.store.credentials("user03").await.unwrap().unwrap();
    session::start(&t.store, &user, &SessionLimits::default(), now)
        .await
        .unwrap();
    let failure = Counter {
        failures: 1,
        since: now,
    };
    let counted = Swap::new(None, failure, now + 3600, now);
    assert!(
        t.store
            .swap_counter(
                &throttle::account_key(&throttle::subject(Some(&user), "user03")),
                counted
            )
            .await
            .unwrap()
    );
    // And a registered client.
    let registration = Registration {
        client_id: "user04".into(),
        redirect_uris: vec!["https://app.example/cb".into()],
        confidential: true,
        ..Registration::default()
    };
    let (client, _) = Client::register(registration, now).unwrap();
    t.store.put_client(&client).await.unwrap();

    let mut seen = Vec::new();
    let mut args = vec!["list".to_string(), "--limit".into(), "3".into()];
    for _ in 0..5 {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let page = t.admin(&refs);
        let lines: Vec<&str> = page.ok().lines().collect();
        assert!(lines.len() <= 3, "{page:?}");
        for line in &lines {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "{line}");
            assert_eq!(fields[2], "0", "failed logins");
            seen.push(fields[0].to_string());
        }
        match page.stderr.trim().strip_prefix("more: auth-admin ") {
            Some(next) => args = next.split(' ').map(str::to_string).collect(),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, names, "each account once: {seen:?}");
}

/// Issue 17, point 9: `show` and `unlock` read `AUTH_ACCOUNT_FAILURES_PER_HOUR` as the
/// functions do: three failures this hour are a wait under a ceiling of 3, none under the
/// default 50, and a bad value is refused as the functions refuse it.
async fn show_and_unlock_judge_waits_by_the_functions_ceiling<S>(mut t: Target<S>)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    let (source, _) = t.tutorial_db("tutorial.db", &[("Nina", None)]);
    t.admin(&["import", "--from", &from(&source)]).ok();
    let now = shared::clock::now();
    let nina = t.store.credentials("nina").await.unwrap().unwrap();
    let window = throttle::account_key(&throttle::subject(Some(&nina), "nina"));
    let three = Swap::new(
        None,
        Counter {
            failures: 3,
            since: now,
        },
        now + 3600,
        now,
    );
    assert!(t.store.swap_counter(&window, three).await.unwrap());
    assert!(
        t.admin(&["show", "nina"])
            .ok()
            .contains("throttled:     no")
    );
    t.env.push(("AUTH_ACCOUNT_FAILURES_PER_HOUR", "3".into()));
    let shown = t.admin(&["show", "nina"]).ok().to_string();
    assert!(
        shown.contains("throttled:     yes, every address"),
        "{shown}"
    );
    let unlocked = t.admin(&["unlock", "nina"]).ok().to_string();
    assert!(unlocked.contains("and a wait of"), "{unlocked}");
    assert!(
        t.admin(&["show", "nina"])
            .ok()
            .contains("throttled:     no")
    );
    t.env.push(("AUTH_ACCOUNT_FAILURES_PER_HOUR", "100".into()));
    assert!(
        t.admin(&["show", "nina"])
            .fails(1)
            .contains("AUTH_ACCOUNT_FAILURES_PER_HOUR")
    );
    // Failures below the ceiling, with no consecutive count (a success reset it): unlock clears
    // them too instead of saying there is nothing to clear.
    t.env.pop();
    let two = Swap::new(
        None,
        Counter {
            failures: 2,
            since: now,
        },
        now + 3600,
        now,
    );
    assert!(t.store.swap_counter(&window, two).await.unwrap());
    let unlocked = t.admin(&["unlock", "nina"]).ok().to_string();
    assert!(unlocked.starts_with("unlocked Nina"), "{unlocked}");
    assert_eq!(t.store.counters(&[&window], now).await.unwrap(), [None]);
}

async fn operators_inspect_unlock_log_out_and_delete<S>(t: Target<S>)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    let (source, hash) = t.tutorial_db("tutorial.db", &[("Emma", Some("Emma Example"))]);
    t.admin(&["import", "--from", &from(&source)]).ok();
    let now = shared::clock::now();
    // Seven consecutive failures, and the account-wide hourly ceiling reached: every address
    // waits.
    t.store.set_failures("emma", 7, now).await;
    let ceiling = Counter {
        failures: shared::policy::ACCOUNT_FAILURE_CEILING,
        since: now,
    };
    let window = Swap::new(None, ceiling, now + 3600, now);
    let emma = t.store.credentials("emma").await.unwrap().unwrap();
    let subject = throttle::subject(Some(&emma), "emma");
    assert!(
        t.store
            .swap_counter(&throttle::account_key(&subject), window)
            .await
            .unwrap()
    );
    // And one address's own schedule: ten failures from it, the last just now.
    let schedule = Counter {
        failures: 10,
        since: now,
    };
    let pair = throttle::pair_key(&subject, "192.0.2.44");
    let pair_swap = Swap::new(None, schedule, now + 3600, now);
    assert!(t.store.swap_counter(&pair, pair_swap).await.unwrap());

    let shown = t.admin(&["show", "EMMA"]).ok().to_string();
    for line in [
        "name:          Emma",
        "full name:     Emma Example",
        "failed logins: 7",
        "throttled:     yes, every address",
        "yes, from 192.0.2.44 ",
    ] {
        assert!(shown.contains(line), "{line:?} in {shown}");
    }
    let user = t.store.credentials("emma").await.unwrap().unwrap();
    assert!(shown.contains(&format!("id:            {}", user.id)));
    assert!(shown.contains(&format!("session epoch: {}", user.session_epoch)));
    assert!(!shown.contains(&hash) && !shown.contains("$2b$"));

    let unlocked = t.admin(&["unlock", "emma"]).ok().to_string();
    assert!(
        unlocked.starts_with("unlocked Emma: cleared 7 failed logins"),
        "{unlocked}"
    );
    assert_eq!(t.store.stored("emma").await.unwrap().1, 0);
    assert!(
        t.admin(&["show", "emma"])
            .ok()
            .contains("throttled:     no")
    );
    // The owner's next correct login passes from the address that waited too.
    let limits = throttle::ThrottleLimits::default();
    match throttle::claim(&t.store, "emma", "192.0.2.44", &limits, now)
        .await
        .unwrap()
    {
        throttle::Attempt::Check(user, claim) => {
            let nothing = shared::store::Follow::Nothing;
            throttle::succeeded(&t.store, &user, &claim, None, &nothing, now)
                .await
                .unwrap()
        }
        other => panic!("still throttled after unlock: {other:?}"),
    }

    // Two sessions; a global logout ends both.
    let limits = SessionLimits::default();
    let user = t.store.credentials("emma").await.unwrap().unwrap();
    let sessions = [
        session::start(&t.store, &user, &limits, now).await.unwrap(),
        session::start(&t.store, &user, &limits, now).await.unwrap(),
    ];
    let open = async |sid: &str| {
        let found = t
            .store
            .profile(&user.id, "Emma", sid)
            .await
            .unwrap()
            .unwrap();
        session::is_open(&found, &user.id, now)
    };
    for grant in &sessions {
        assert!(open(&grant.sid).await);
    }
    t.admin(&["logout", "emma"]).ok();
    for grant in &sessions {
        assert!(!open(&grant.sid).await, "session ended");
        assert!(
            session::refresh(&t.store, &grant.refresh_token, None, &limits, &[7; 32], now)
                .await
                .is_err(),
            "refresh token refused"
        );
    }

    let deleted = t.admin(&["delete", "Emma"]).ok().to_string();
    assert!(deleted.starts_with("deleted Emma"), "{deleted}");
    assert!(t.store.credentials("emma").await.unwrap().is_none());
    assert_eq!(
        t.admin(&["delete", "Emma"]).fails(1),
        "auth-admin: no user named Emma"
    );
}

async fn unknown_names_exit_1_with_one_line<S>(t: Target<S>)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    for command in ["show", "unlock", "logout", "delete"] {
        assert_eq!(
            t.admin(&[command, "nobody"]).fails(1),
            "auth-admin: no user named nobody"
        );
    }
    let missing = t.dir.path().join("missing.db");
    let line = t
        .admin(&["import", "--from", &from(&missing)])
        .fails(1)
        .to_string();
    assert!(line.contains("cannot read sqlite:"), "{line}");
    assert!(
        t.admin(&["import", "--from", "dynamodb:users"])
            .fails(1)
            .contains("--from")
    );
    assert!(
        t.admin(&["list", "--limit", "0"]).code == 1,
        "a bad argument is bad input"
    );
}

/// The one JSON object a `client add` printed (one line of stdout).
fn printed_object(run: &Run) -> serde_json::Map<String, Value> {
    let stdout = run.ok();
    assert_eq!(stdout.lines().count(), 1, "{run:?}");
    match serde_json::from_str(stdout) {
        Ok(Value::Object(object)) => object,
        other => panic!("not one JSON object: {other:?} from {run:?}"),
    }
}

async fn clients_are_added_listed_and_removed<S>(t: Target<S>)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    assert_eq!(t.admin(&["client", "list"]).ok(), "");
    // A public loopback client, as the README registers one.
    let added = t.admin(&[
        "client",
        "add",
        "--id",
        "cli",
        "--redirect-uri",
        "http://127.0.0.1:8080/callback",
    ]);
    assert_eq!(
        Value::Object(printed_object(&added)),
        json!({"client_id": "cli"})
    );
    let cli = t.store.client("cli").await.unwrap().expect("stored");
    assert_eq!(
        (cli.confidential, &cli.secret_hash, &cli.redirect_uris),
        (
            false,
            &None,
            &vec!["http://127.0.0.1:8080/callback".to_string()]
        )
    );
    // A confidential one: its secret printed once, its hash stored.
    let added = t.admin(&[
        "client",
        "add",
        "--id",
        "web",
        "--redirect-uri",
        "https://app.example/cb",
        "--redirect-uri",
        "com.example.app:/cb",
        "--post-logout-redirect-uri",
        "https://app.example/bye",
        "--confidential",
    ]);
    let printed = printed_object(&added);
    let keys: Vec<&str> = printed.keys().map(String::as_str).collect();
    assert_eq!(keys, ["client_id", "client_secret"]);
    assert_eq!(printed["client_id"], "web");
    let secret = printed["client_secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 43, "32 bytes, base64url");
    let web = t.store.client("web").await.unwrap().expect("stored");
    let hash = web.secret_hash.clone().expect("a hash");
    assert_ne!(hash, secret, "only the hash is stored");
    assert!(web.verify_secret(&secret));
    assert!(web.confidential);
    assert_eq!(
        web.redirect_uris,
        ["https://app.example/cb", "com.example.app:/cb"]
    );
    assert_eq!(web.post_logout_redirect_uris, ["https://app.example/bye"]);

    let listed = t.admin(&["client", "list"]);
    assert_eq!(
        listed.ok(),
        "cli\tpublic\thttp://127.0.0.1:8080/callback\t\n\
         web\tconfidential\thttps://app.example/cb com.example.app:/cb\thttps://app.example/bye\n"
    );
    assert!(!listed.stdout.contains(&hash) && !listed.stdout.contains(&secret));
    // Clients are no accounts.
    assert_eq!(t.admin(&["list"]).ok(), "");

    assert_eq!(
        t.admin(&["client", "remove", "cli"]).ok(),
        "removed client cli\n"
    );
    assert_eq!(
        t.admin(&["client", "remove", "cli"]).fails(1),
        "auth-admin: no client with id cli"
    );
    assert!(t.store.client("cli").await.unwrap().is_none());
    let rest = t.admin(&["client", "list"]).ok().to_string();
    assert!(
        rest.starts_with("web\tconfidential\t") && rest.lines().count() == 1,
        "{rest}"
    );
}

async fn bad_client_registrations_exit_1_with_one_line<S>(t: Target<S>)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    let add = |args: &[&str]| t.admin(&[&["client", "add"][..], args].concat());
    let too_long = "x".repeat(65);
    for (args, expected) in [
        (
            &["--id", "web", "--redirect-uri", "http://example.com/cb"][..],
            "auth-admin: --redirect-uri: \"http://example.com/cb\": http only on a loopback host",
        ),
        (
            &["--id", "web", "--redirect-uri", "https://a.example/cb#frag"],
            "auth-admin: --redirect-uri: \"https://a.example/cb#frag\": must not have a fragment",
        ),
        (
            &["--id", "web", "--redirect-uri", "javascript:alert(1)"],
            "the scheme javascript: is refused",
        ),
        (
            &["--id", "web", "--redirect-uri", "/callback"],
            "must be an absolute URI",
        ),
        (
            &["--id", "web", "--redirect-uri", "https://App.example/cb"],
            "not in normal form: register \"https://app.example/cb\"",
        ),
        (
            &[
                "--id",
                "has space",
                "--redirect-uri",
                "https://a.example/cb",
            ],
            "auth-admin: --id: \"has space\": must be 1 to 64 of",
        ),
        (
            &["--id", &too_long, "--redirect-uri", "https://a.example/cb"],
            "auth-admin: --id: ",
        ),
        (
            &["--id", "web"],
            "auth-admin: --redirect-uri: at least one is required",
        ),
        (
            &[
                "--id",
                "web",
                "--redirect-uri",
                "https://a.example/cb",
                "--post-logout-redirect-uri",
                "data:text/html,x",
            ],
            "auth-admin: --post-logout-redirect-uri: \"data:text/html,x\": the scheme data:",
        ),
    ] {
        let refused = add(args);
        assert!(refused.stdout.is_empty(), "{refused:?}");
        let line = refused.fails(1);
        assert!(line.contains(expected), "{args:?}: {line}");
    }
    assert_eq!(t.store.clients().await.unwrap(), [], "nothing stored");

    // A taken id: refused, the first registration kept.
    add(&["--id", "web", "--redirect-uri", "https://a.example/cb"]).ok();
    let again = add(&[
        "--id",
        "web",
        "--redirect-uri",
        "https://b.example/cb",
        "--confidential",
    ]);
    assert!(again.stdout.is_empty(), "{again:?}");
    assert_eq!(
        again.fails(1),
        "auth-admin: a client with id web is registered already"
    );
    let kept = t.store.client("web").await.unwrap().unwrap();
    assert_eq!(
        (kept.redirect_uris, kept.confidential),
        (vec!["https://a.example/cb".to_string()], false)
    );
    assert_eq!(
        t.admin(&["client", "remove", "nobody"]).fails(1),
        "auth-admin: no client with id nobody"
    );
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite_backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(sqlite()).await;
                }
            )*
        }
        mod dynamodb_backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(dynamodb().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    import_is_idempotent_and_refuses_collisions,
    a_name_held_by_another_account_is_refused_not_merged,
    an_import_from_one_of_our_files_keeps_the_ids,
    list_pages_through_every_account_once,
    operators_inspect_unlock_log_out_and_delete,
    show_and_unlock_judge_waits_by_the_functions_ceiling,
    unknown_names_exit_1_with_one_line,
    clients_are_added_listed_and_removed,
    bad_client_registrations_exit_1_with_one_line,
    mfa_reset_turns_totp_off_and_ends_every_session,
);

/// A lost device: `mfa reset` turns the account's TOTP off (its recovery codes too) and ends
/// its sessions; `show` says whether TOTP is on, and never prints the sealed secret.
async fn mfa_reset_turns_totp_off_and_ends_every_session<S>(t: Target<S>)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    let (source, _) = t.tutorial_db("tutorial.db", &[("Emma", None)]);
    t.admin(&["import", "--from", &from(&source)]).ok();
    let emma = t.store.credentials("emma").await.unwrap().unwrap();
    assert!(
        t.admin(&["show", "emma"])
            .ok()
            .contains("totp:          off\n")
    );
    assert!(
        t.store
            .set_pending_totp(&emma, "a1.c2VhbGVk")
            .await
            .unwrap()
    );
    assert!(
        t.admin(&["show", "emma"])
            .ok()
            .contains("totp:          pending (not confirmed)\n")
    );
    let codes = ["aGFzaA".to_string()];
    assert!(
        t.store
            .enable_totp(&emma, "a1.c2VhbGVk", 9, &codes)
            .await
            .unwrap()
    );
    let limits = SessionLimits::default();
    let now = shared::clock::now();
    let grant = session::start(&t.store, &emma, &limits, now).await.unwrap();
    let shown = t.admin(&["show", "emma"]).ok().to_string();
    assert!(shown.contains("totp:          on\n"), "{shown}");
    assert!(!shown.contains("c2VhbGVk"), "{shown}");
    let out = t.admin(&["mfa", "reset", "EMMA"]).ok().to_string();
    assert!(out.contains("turned TOTP off for Emma"), "{out}");
    let after = t.store.credentials("emma").await.unwrap().unwrap();
    assert!(!after.totp_enabled && after.totp_secret.is_none());
    assert!(after.session_epoch > emma.session_epoch, "sessions ended");
    let record = t.store.session(&grant.sid).await.unwrap();
    assert!(record.is_none_or(|r| r.life.epoch < after.session_epoch));
    assert!(!t.store.take_recovery_code(&after, "aGFzaA").await.unwrap());
    let again = t.admin(&["mfa", "reset", "emma"]).ok().to_string();
    assert!(again.contains("has no second factor"), "{again}");
    t.admin(&["mfa", "reset", "nobody"]).fails(1);
}

#[test]
fn an_unreachable_sqlite_store_exits_2_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "").unwrap();
    let t = sqlite();
    let (source, _) = t.tutorial_db("tutorial.db", &[("emma", None)]);
    // Its folder cannot be created (a file is in the way: refused even to root).
    let inside = vec![(
        "AUTH_STORE",
        format!("sqlite:{}", file.join("users.db").display()),
    )];
    let line = run(&inside, &["import", "--from", &from(&source)])
        .fails(2)
        .to_string();
    assert!(
        line.contains("cannot open sqlite:") && line.contains("os error"),
        "{line}"
    );
    // Only an import creates a store: elsewhere a missing file is a missing store.
    let missing = vec![(
        "AUTH_STORE",
        format!("sqlite:{}", dir.path().join("typo.db").display()),
    )];
    for args in [&["list"][..], &["show", "emma"]] {
        assert!(run(&missing, args).fails(2).contains("no such file"));
    }
    assert!(!dir.path().join("typo.db").exists());
}

#[test]
fn an_unreachable_dynamodb_exits_2_with_the_cause() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = vec![
        ("AUTH_STORE", "dynamodb:users".to_string()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ];
    for args in [&["list"][..], &["show", "emma"], &["delete", "emma"]] {
        let line = run(&env, args).fails(2).to_string();
        assert!(
            line.contains("store unavailable") && line.contains("refused"),
            "{line}"
        );
    }
}

#[test]
fn a_missing_store_setting_is_bad_input() {
    assert_eq!(run(&[], &["list"]).code, 1);
    assert_eq!(
        run(&[("AUTH_STORE", "postgres:x".into())], &["list"]).fails(1),
        "auth-admin: invalid configuration: AUTH_STORE: expected sqlite:PATH or dynamodb:TABLE"
    );
}

/// How long importing 100,000 tutorial users takes, and a re-run of it (all skipped).
async fn import_100k<S>(t: Target<S>, backend: &str)
where
    S: FullStore + TestSeam + AdminStore + 'static,
{
    const USERS: usize = 100_000;
    let path = t.dir.path().join("tutorial-100k.db");
    // One valid-format bcrypt hash for all: only the copying is timed.
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    write_tutorial_db(
        &path,
        (0..USERS).map(|i| (format!("user{i:06}"), hash.clone(), None)),
    );
    binary();
    for (pass, expected) in [
        ("first run", "imported 100000, skipped 0, refused 0"),
        ("re-run", "imported 0, skipped 100000, refused 0"),
    ] {
        let started = Instant::now();
        let out = t.admin(&["import", "--from", &from(&path)]);
        let took = started.elapsed();
        let report = out.ok();
        eprintln!(
            "{backend}, {pass}: {:.1} s ({:.0} users/s): {}",
            took.as_secs_f64(),
            USERS as f64 / took.as_secs_f64(),
            report.lines().next().unwrap_or("")
        );
        assert!(report.starts_with(expected), "{report}");
    }
    assert!(t.store.stored(&username_key("user099999")).await.is_some());
}

#[tokio::test]
#[ignore = "a measurement: minutes on moto"]
async fn import_100k_sqlite() {
    import_100k(sqlite(), "SQLite").await;
}

#[tokio::test]
#[ignore = "a measurement: minutes on moto"]
async fn import_100k_dynamodb() {
    import_100k(dynamodb().await, "DynamoDB on moto").await;
}
