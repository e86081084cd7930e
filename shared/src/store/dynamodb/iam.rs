//! `template.yaml`'s DynamoDB statements, kept in step with this store.
//!
//! AWS alone enforces them: a name missing from a `dynamodb:Attributes` list, or a key outside a
//! statement's `dynamodb:LeadingKeys`, is an `AccessDenied` in a deployment that no local run
//! (moto included) shows. So these tests read each function's statements from the template and
//! check them twice:
//! - against the lists in the parent module (the key prefixes, the attribute names each kind of
//!   write names), statement by statement;
//! - against the requests the store really sends, captured by a stand-in DynamoDB endpoint on
//!   loopback while each function's store calls run: every request must be allowed by one of
//!   its function's statements (evaluated as IAM does, for the condition keys used here), every
//!   statement must allow some request, and every attribute and return value a statement lists
//!   must be one some request uses.
//!
//! The template is read with a small YAML reader of the subset its policies use (block maps and
//! lists, flow lists, quoted scalars; CloudFormation tags are kept as text): no YAML crate
//! understands `!GetAtt` and friends, and the workspace has none.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use serde_json::Value;

use super::*;
use crate::store::mfa::SecondStepPass;
use crate::store::{
    AccountStore, AttemptClaim, AttemptSuccess, ClientStore, Counter, CounterStore,
    CredentialStore, Credentials, EmailStore, Follow, Holder, MfaStore, PreviousGeneration,
    ProfileReader, SessionLife, SessionRecord, SessionStore, Swap, TicketKind, TicketStore,
    TicketWrite, UserWriter, WindowAdd,
};

const TEMPLATE: &str = include_str!("../../../../template.yaml");

// ---------------------------------------------------------------------------------------------
// What each function's statements must be.

/// The kind of item a statement's `dynamodb:LeadingKeys` condition names.
#[derive(Debug, Clone, Copy)]
enum Keys {
    /// Accounts: every key but a session's or a counter's.
    Accounts,
    Sessions,
    Counters,
    /// Accounts and sessions (a bearer check reads both in one batch), and clients.
    AllButCounters,
    /// Single-use tickets of these kinds only.
    Tickets(&'static [TicketKind]),
    /// OAuth clients.
    Clients,
    /// Verified addresses' claims.
    Emails,
    /// Accounts, counters and mfa_tokens (a second step's read).
    SecondSteps,
}

impl Keys {
    /// The condition operator and patterns this kind is written as in the template.
    fn condition(self) -> (&'static str, Vec<String>) {
        let pattern = |prefix: &str| format!("{prefix}*");
        match self {
            Keys::Accounts => (
                "ForAllValues:StringNotLike",
                RESERVED_PREFIXES.iter().map(|p| pattern(p)).collect(),
            ),
            Keys::Sessions => ("ForAllValues:StringLike", vec![pattern(SESSION_PREFIX)]),
            Keys::Counters => ("ForAllValues:StringLike", vec![pattern(COUNTER_PREFIX)]),
            Keys::AllButCounters => ("ForAllValues:StringNotLike", vec![pattern(COUNTER_PREFIX)]),
            Keys::Tickets(kinds) => (
                "ForAllValues:StringLike",
                kinds
                    .iter()
                    .map(|k| format!("{TICKET_PREFIX}{} *", k.as_str()))
                    .collect(),
            ),
            Keys::Clients => ("ForAllValues:StringLike", vec![pattern(CLIENT_PREFIX)]),
            Keys::Emails => ("ForAllValues:StringLike", vec![pattern(EMAIL_PREFIX)]),
            Keys::SecondSteps => {
                let mut not = vec![
                    pattern(SESSION_PREFIX),
                    pattern(CLIENT_PREFIX),
                    pattern(EMAIL_PREFIX),
                ];
                let others = [
                    TicketKind::AuthorizationCode,
                    TicketKind::LoginTransaction,
                    TicketKind::EmailVerification,
                    TicketKind::PasswordReset,
                ];
                not.extend(others.map(|k| format!("{TICKET_PREFIX}{} *", k.as_str())));
                ("ForAllValues:StringNotLike", not)
            }
        }
    }
}

/// One statement as the store needs it.
struct Expected {
    sid: &'static str,
    actions: &'static [&'static str],
    keys: Keys,
    /// The union of these lists: `None` for statements without an attribute condition (reads,
    /// which return whole items, and deletes, whose only attribute is the key).
    attributes: Option<&'static [&'static [&'static str]]>,
    return_values: Option<&'static [&'static str]>,
}

const GET: &[&str] = &["dynamodb:GetItem"];
const BATCH_GET: &[&str] = &["dynamodb:BatchGetItem"];
const PUT: &[&str] = &["dynamodb:PutItem"];
const UPDATE: &[&str] = &["dynamodb:UpdateItem"];
const DELETE: &[&str] = &["dynamodb:DeleteItem"];
const COUNTER_WRITES: &[&str] = &[
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
];
/// The window add asks for ALL_NEW, and for ALL_OLD on a failed condition.
const COUNTER_RETURN_VALUES: &[&str] = &["NONE", "ALL_NEW", "ALL_OLD"];

fn read_counters() -> Expected {
    Expected {
        sid: "ReadCounters",
        actions: BATCH_GET,
        keys: Keys::Counters,
        attributes: None,
        return_values: None,
    }
}

fn write_counters() -> Expected {
    Expected {
        sid: "WriteCounters",
        actions: COUNTER_WRITES,
        keys: Keys::Counters,
        attributes: Some(&[COUNTER_ATTRIBUTES]),
        return_values: Some(COUNTER_RETURN_VALUES),
    }
}

const MFA_TOKENS: &[TicketKind] = &[TicketKind::MfaToken];
const CODES_AND_MFA_TOKENS: &[TicketKind] = &[TicketKind::AuthorizationCode, TicketKind::MfaToken];
const VERIFICATION_LINKS: &[TicketKind] = &[TicketKind::EmailVerification];
const MAILED_LINKS: &[TicketKind] = &[TicketKind::EmailVerification, TicketKind::PasswordReset];

fn issue_links(kinds: &'static [TicketKind]) -> Expected {
    Expected {
        sid: "IssueLinks",
        actions: PUT,
        keys: Keys::Tickets(kinds),
        attributes: Some(&[TICKET_ATTRIBUTES]),
        return_values: Some(&["NONE"]),
    }
}

/// A login claim's check that a name is still no account (authorize's and account's; login's
/// statement of the same name also checks sessions' accounts).
fn check_claims() -> Expected {
    Expected {
        sid: "CheckAccounts",
        actions: &["dynamodb:ConditionCheckItem"],
        keys: Keys::Accounts,
        attributes: Some(&[CLAIM_CHECK_ATTRIBUTES]),
        return_values: None,
    }
}

/// A second step's read: the mfa_token, its account and the account's windows, in one batch.
fn read_second_steps() -> Expected {
    Expected {
        sid: "ReadSecondSteps",
        actions: BATCH_GET,
        keys: Keys::SecondSteps,
        attributes: None,
        return_values: None,
    }
}

fn read_bearer() -> Expected {
    Expected {
        sid: "ReadBearerAccountsAndSessions",
        actions: BATCH_GET,
        keys: Keys::AllButCounters,
        attributes: None,
        return_values: None,
    }
}

/// Every function with DynamoDB permissions, and its statements.
fn expected() -> Vec<(&'static str, Vec<Expected>)> {
    vec![
        (
            "RegisterFunction",
            vec![
                Expected {
                    sid: "CreateAccounts",
                    actions: PUT,
                    keys: Keys::Accounts,
                    attributes: Some(&[NEW_ACCOUNT_ATTRIBUTES, NEW_ACCOUNT_EMAIL_ATTRIBUTES]),
                    return_values: Some(&["NONE"]),
                },
                issue_links(VERIFICATION_LINKS),
            ],
        ),
        (
            "LoginFunction",
            vec![
                Expected {
                    sid: "ReadAccountsAndSessions",
                    actions: GET,
                    keys: Keys::AllButCounters,
                    attributes: None,
                    return_values: None,
                },
                read_counters(),
                read_second_steps(),
                write_counters(),
                Expected {
                    sid: "StartAndEndSessions",
                    actions: &["dynamodb:PutItem", "dynamodb:DeleteItem"],
                    keys: Keys::Sessions,
                    attributes: Some(&[
                        SESSION_ATTRIBUTES,
                        PREVIOUS_GENERATION_ATTRIBUTES,
                        HOLDER_ATTRIBUTES,
                        CLIENT_SESSION_ATTRIBUTES,
                        MFA_SESSION_ATTRIBUTES,
                    ]),
                    return_values: Some(&["NONE"]),
                },
                Expected {
                    sid: "ReadCodeAccountsAndSessions",
                    actions: BATCH_GET,
                    keys: Keys::AllButCounters,
                    attributes: None,
                    return_values: None,
                },
                Expected {
                    sid: "RedeemCodes",
                    actions: DELETE,
                    keys: Keys::Tickets(CODES_AND_MFA_TOKENS),
                    attributes: None,
                    return_values: Some(&["ALL_OLD", "NONE"]),
                },
                Expected {
                    sid: "CheckBrowserSessions",
                    actions: &["dynamodb:ConditionCheckItem"],
                    keys: Keys::Sessions,
                    attributes: Some(&[BROWSER_CHECK_ATTRIBUTES]),
                    return_values: None,
                },
                Expected {
                    sid: "RotateSessions",
                    actions: UPDATE,
                    keys: Keys::Sessions,
                    attributes: Some(&[ROTATION_ATTRIBUTES]),
                    return_values: Some(&["NONE"]),
                },
                Expected {
                    sid: "CheckAccounts",
                    actions: &["dynamodb:ConditionCheckItem"],
                    keys: Keys::Accounts,
                    attributes: Some(&[ACCOUNT_CHECK_ATTRIBUTES]),
                    return_values: None,
                },
                Expected {
                    sid: "UpdateAccounts",
                    actions: UPDATE,
                    keys: Keys::Accounts,
                    attributes: Some(&[LOGIN_OUTCOME_ATTRIBUTES, TOTP_CHECK_ATTRIBUTES]),
                    return_values: Some(&["NONE"]),
                },
                Expected {
                    sid: "IssueMfaTokens",
                    actions: PUT,
                    keys: Keys::Tickets(MFA_TOKENS),
                    attributes: Some(&[TICKET_ATTRIBUTES]),
                    return_values: Some(&["NONE"]),
                },
            ],
        ),
        (
            "AuthorizeFunction",
            vec![
                check_claims(),
                Expected {
                    sid: "ReadAccountsSessionsAndClients",
                    actions: GET,
                    keys: Keys::AllButCounters,
                    attributes: None,
                    return_values: None,
                },
                read_counters(),
                read_second_steps(),
                write_counters(),
                Expected {
                    sid: "CreateAccounts",
                    actions: PUT,
                    keys: Keys::Accounts,
                    attributes: Some(&[NEW_ACCOUNT_ATTRIBUTES]),
                    return_values: Some(&["NONE"]),
                },
                Expected {
                    sid: "UpdateAccounts",
                    actions: UPDATE,
                    keys: Keys::Accounts,
                    attributes: Some(&[LOGIN_OUTCOME_ATTRIBUTES, TOTP_CHECK_ATTRIBUTES]),
                    return_values: Some(&["NONE"]),
                },
                Expected {
                    sid: "StartAndEndBrowserSessions",
                    actions: &["dynamodb:PutItem", "dynamodb:DeleteItem"],
                    keys: Keys::Sessions,
                    attributes: Some(&[
                        SESSION_ATTRIBUTES,
                        HOLDER_ATTRIBUTES,
                        MFA_SESSION_ATTRIBUTES,
                    ]),
                    return_values: Some(&["NONE"]),
                },
                Expected {
                    sid: "TakeMfaTokens",
                    actions: DELETE,
                    keys: Keys::Tickets(MFA_TOKENS),
                    attributes: None,
                    return_values: Some(&["ALL_OLD", "NONE"]),
                },
                read_second_steps(),
                Expected {
                    sid: "IssueCodes",
                    actions: PUT,
                    keys: Keys::Tickets(CODES_AND_MFA_TOKENS),
                    attributes: Some(&[TICKET_ATTRIBUTES]),
                    return_values: Some(&["NONE"]),
                },
            ],
        ),
        ("MeFunction", vec![read_bearer()]),
        (
            "AccountFunction",
            vec![
                check_claims(),
                read_bearer(),
                Expected {
                    sid: "ReadAccounts",
                    actions: GET,
                    keys: Keys::Accounts,
                    attributes: None,
                    return_values: None,
                },
                read_counters(),
                write_counters(),
                Expected {
                    sid: "StartSessions",
                    actions: PUT,
                    keys: Keys::Sessions,
                    attributes: Some(&[
                        SESSION_ATTRIBUTES,
                        PREVIOUS_GENERATION_ATTRIBUTES,
                        MFA_SESSION_ATTRIBUTES,
                    ]),
                    return_values: Some(&["NONE"]),
                },
                Expected {
                    sid: "UpdateAccounts",
                    actions: UPDATE,
                    keys: Keys::Accounts,
                    attributes: Some(&[
                        LOGIN_OUTCOME_ATTRIBUTES,
                        PASSWORD_CHANGE_ATTRIBUTES,
                        EMAIL_ATTRIBUTES,
                        TOTP_ATTRIBUTES,
                    ]),
                    return_values: Some(&["NONE", "UPDATED_NEW"]),
                },
                Expected {
                    sid: "ReadLinks",
                    actions: GET,
                    keys: Keys::Tickets(MAILED_LINKS),
                    attributes: None,
                    return_values: None,
                },
                issue_links(MAILED_LINKS),
                Expected {
                    sid: "TakeLinks",
                    actions: DELETE,
                    keys: Keys::Tickets(MAILED_LINKS),
                    attributes: None,
                    return_values: Some(&["ALL_OLD"]),
                },
                Expected {
                    sid: "ReadAddressClaims",
                    actions: GET,
                    keys: Keys::Emails,
                    attributes: None,
                    return_values: None,
                },
                Expected {
                    sid: "ClaimAndReleaseAddresses",
                    actions: &["dynamodb:PutItem", "dynamodb:DeleteItem"],
                    keys: Keys::Emails,
                    attributes: Some(&[EMAIL_CLAIM_ATTRIBUTES]),
                    return_values: Some(&["NONE"]),
                },
                Expected {
                    sid: "DeleteAccounts",
                    actions: DELETE,
                    keys: Keys::Accounts,
                    attributes: None,
                    return_values: Some(&["NONE"]),
                },
            ],
        ),
        (
            "LogoutFunction",
            vec![
                Expected {
                    sid: "ReadSessions",
                    actions: GET,
                    keys: Keys::Sessions,
                    attributes: None,
                    return_values: None,
                },
                read_bearer(),
                Expected {
                    sid: "ReadClients",
                    actions: GET,
                    keys: Keys::Clients,
                    attributes: None,
                    return_values: None,
                },
                Expected {
                    sid: "EndSessions",
                    actions: DELETE,
                    keys: Keys::Sessions,
                    attributes: None,
                    return_values: Some(&["NONE"]),
                },
                Expected {
                    sid: "EndAllSessions",
                    actions: UPDATE,
                    keys: Keys::Accounts,
                    attributes: Some(&[GLOBAL_LOGOUT_ATTRIBUTES]),
                    return_values: Some(&["UPDATED_NEW"]),
                },
            ],
        ),
    ]
}

/// The functions that must have no DynamoDB permission at all.
const NO_TABLE_ACCESS: &[&str] = &["JwksFunction", "DocsFunction"];

fn sorted(names: impl IntoIterator<Item = impl ToString>) -> Vec<String> {
    let set: BTreeSet<String> = names.into_iter().map(|n| n.to_string()).collect();
    set.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn template_key_prefixes_and_attribute_lists_match_the_store() {
    let mut problems = Vec::new();
    for (function, statements) in expected() {
        let found = table_statements(function);
        let expected_sids = sorted(statements.iter().map(|s| s.sid));
        let found_sids = sorted(found.iter().map(|s| &s.sid));
        if found_sids.len() != found.len() {
            problems.push(format!("{function}: two DynamoDB statements share a Sid"));
        }
        if expected_sids != found_sids {
            problems.push(format!(
                "{function}: DynamoDB statements {found_sids:?}, expected {expected_sids:?}"
            ));
        }
        for want in &statements {
            let Some(got) = found.iter().find(|s| s.sid == want.sid) else {
                continue;
            };
            let at = format!("{function}/{}", want.sid);
            if got.effect != "Allow" {
                problems.push(format!("{at}: Effect {:?}", got.effect));
            }
            if sorted(&got.actions) != sorted(want.actions) {
                problems.push(format!(
                    "{at}: actions {:?}, expected {:?}",
                    got.actions, want.actions
                ));
            }
            let mut wanted: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
            let (operator, patterns) = want.keys.condition();
            // Compared as sets, as IAM reads them (the template may list them in any order).
            wanted.insert(
                (operator.into(), "dynamodb:LeadingKeys".into()),
                sorted(patterns),
            );
            if let Some(lists) = want.attributes {
                let names = sorted(lists.iter().flat_map(|l| l.iter()));
                wanted.insert(
                    (
                        "ForAllValues:StringEquals".into(),
                        "dynamodb:Attributes".into(),
                    ),
                    names,
                );
            }
            if let Some(values) = want.return_values {
                wanted.insert(
                    (
                        "StringEqualsIfExists".into(),
                        "dynamodb:ReturnValues".into(),
                    ),
                    sorted(values),
                );
            }
            let got_conditions: BTreeMap<(String, String), Vec<String>> = got
                .conditions
                .iter()
                .map(|(k, v)| (k.clone(), sorted(v)))
                .collect();
            for (key, values) in &got.conditions {
                if sorted(values).len() != values.len() {
                    problems.push(format!("{at}: {key:?} lists a value twice: {values:?}"));
                }
            }
            if got_conditions != wanted {
                problems.push(format!(
                    "{at}: conditions\n    {got_conditions:?}\n  expected\n    {wanted:?}"
                ));
            }
        }
    }
    for function in NO_TABLE_ACCESS {
        let found = table_statements(function);
        if !found.is_empty() {
            problems.push(format!("{function}: has DynamoDB statements {found:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "template.yaml is out of step with store/dynamodb.rs:\n  {}",
        problems.join("\n  ")
    );
}

#[tokio::test]
async fn every_request_a_function_sends_is_allowed_and_every_permission_is_used() {
    let endpoint = Endpoint::start();
    let store = endpoint.store();
    let mut problems = Vec::new();
    for (function, _) in expected() {
        endpoint.take();
        run(function, &store).await;
        let sent = endpoint.take();
        assert!(
            !sent.is_empty(),
            "{function}: no request reached the endpoint"
        );
        let statements = table_statements(function);
        let mut used: Vec<Usage> = statements.iter().map(|_| Usage::default()).collect();
        for (operation, body) in &sent {
            for request in requests(operation, body) {
                let allowing: Vec<usize> = statements
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.allows(&request))
                    .map(|(i, _)| i)
                    .collect();
                if allowing.is_empty() {
                    problems.push(format!("{function}: no statement allows {request:?}"));
                }
                for i in allowing {
                    let usage = &mut used[i];
                    usage.requests += 1;
                    usage
                        .attributes
                        .extend(request.attributes.iter().flatten().cloned());
                    usage
                        .return_values
                        .extend(request.return_values.iter().cloned());
                }
            }
        }
        for (statement, usage) in statements.iter().zip(&used) {
            let at = format!("{function}/{}", statement.sid);
            if usage.requests == 0 {
                problems.push(format!(
                    "{at}: allows none of the requests the function sends"
                ));
                continue;
            }
            let condition = |key: &str| {
                statement
                    .conditions
                    .iter()
                    .find(|((_, k), _)| k == key)
                    .map(|(_, values)| values.iter().cloned().collect::<BTreeSet<_>>())
            };
            if let Some(listed) = condition("dynamodb:Attributes")
                && listed != usage.attributes
            {
                problems.push(format!(
                    "{at}: lists attributes no request names: {:?}",
                    listed.difference(&usage.attributes).collect::<Vec<_>>()
                ));
            }
            if let Some(listed) = condition("dynamodb:ReturnValues")
                && listed != usage.return_values
            {
                problems.push(format!(
                    "{at}: allows return values no request asks for: {:?}",
                    listed.difference(&usage.return_values).collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "template.yaml and the store's requests disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// The key patterns split the table as the store does: account keys, which may start with `#`
/// but hold no whitespace, match no reserved pattern; session and counter keys match theirs
/// and no other, and a client's key is no account's.
#[test]
fn the_key_patterns_tell_accounts_sessions_and_counters_apart() {
    let session = SESSION_PREFIX.to_string() + "Zm9vYmFy";
    let counter = COUNTER_PREFIX.to_string() + "pair emma 203.0.113.7";
    let (_, reserved) = Keys::Accounts.condition();
    let account = |key: &str| !reserved.iter().any(|p| glob(p, key));
    for name in [
        "emma",
        "#emma",
        "#session",
        "#throttle",
        "#client",
        "session#1",
        "***",
    ] {
        let key = crate::policy::username(name)
            .unwrap_or_else(|e| panic!("{name:?} is a valid username: {e:?}"))
            .key;
        assert!(account(&key), "{key:?} is an account key");
    }
    for name in ["#session x", "#throttle x", "#client x"] {
        assert!(crate::policy::username(name).is_err(), "{name:?} registers");
    }
    let client = CLIENT_PREFIX.to_string() + "web";
    assert!(!account(&session) && !account(&counter) && !account(&client));
    assert_eq!(client_key("web"), s(&client));
    let (_, sessions) = Keys::Sessions.condition();
    let (_, counters) = Keys::Counters.condition();
    assert!(glob(&sessions[0], &session) && !glob(&sessions[0], &counter));
    assert!(glob(&counters[0], &counter) && !glob(&counters[0], &session));
    assert_eq!(session_key("Zm9vYmFy"), s(&session));
    assert_eq!(counter_key("pair emma 203.0.113.7"), s(&counter));
}

// ---------------------------------------------------------------------------------------------
// What each function asks of the store: the calls its handler makes, read from
// shared/src/handlers/, shared/src/throttle.rs and shared/src/session.rs.

async fn run(function: &str, store: &DynamoStore) {
    match function {
        "RegisterFunction" => register(store).await,
        "LoginFunction" => login(store).await,
        "AuthorizeFunction" => authorize(store).await,
        "MeFunction" => me(store).await,
        "AccountFunction" => account(store).await,
        "LogoutFunction" => logout(store).await,
        other => panic!("no store calls are listed for {other}"),
    }
}

const NOW: u64 = 1_800_000_000;

fn user() -> Credentials {
    Credentials {
        id: "id-emma".into(),
        username_key: "emma".into(),
        username: "Emma".into(),
        password_hash: "$2b$12$old".into(),
        failed_logins: 1,
        last_failed_at: Some(NOW - 60),
        session_epoch: 0,
        email: None,
        email_verified: false,
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: 0,
        full_name: Some("Emma Example".into()),
    }
}

fn session(epoch: u64, previous: bool) -> SessionRecord {
    SessionRecord {
        sid: "c2Vzc2lvbg".into(),
        username_key: "emma".into(),
        username: Some("Emma".into()),
        life: SessionLife {
            user_id: "id-emma".into(),
            epoch,
            expires_at: NOW + 3600,
        },
        family_key: "ZmFtaWx5".into(),
        generation: 2,
        current_hash: "aGFzaDI".into(),
        previous: previous.then(|| PreviousGeneration {
            hash: "aGFzaDE".into(),
            sealed_next: "c2VhbGVk".into(),
            rotated_at: NOW - 5,
        }),
        created_at: NOW - 600,
        holder: Holder::Client {
            client_id: "web".into(),
            scope: "openid offline_access".into(),
        },
        mfa: false,
    }
}

/// `create_session` as it can be called: a login's first generation, or with a previous one.
/// The password grant's sessions (no holder stored).
async fn start_sessions(store: &DynamoStore) {
    let mut record = session(0, false);
    record.holder = Holder::Password;
    store.create_session(&record, NOW).await.unwrap();
    record = session(3, true);
    record.holder = Holder::Password;
    store.create_session(&record, NOW).await.unwrap();
}

/// `throttle::claim`, `throttle::succeeded` (and the release of a refused claim), settling a
/// success with each of `follows`.
async fn throttle(store: &DynamoStore, rehash: Option<(&str, &str)>, follows: &[Follow]) {
    let user = user();
    store.credentials(&user.username_key).await.unwrap();
    let keys = [
        "pair emma 203.0.113.7",
        "account emma",
        "source 203.0.113.7",
    ];
    store.counters(&keys, NOW).await.unwrap();
    store.counters(&keys[..1], NOW).await.unwrap();
    store.add_in_window(keys[2], 100, 3600, NOW).await.unwrap();
    store.give_back(keys[1], NOW - 10).await.unwrap();
    let seen = Counter {
        failures: 2,
        since: NOW - 30,
    };
    let next = Counter {
        failures: 3,
        since: NOW,
    };
    store
        .swap_counter(keys[0], Swap::new(None, next, NOW + 900, NOW))
        .await
        .unwrap();
    store
        .swap_counter(keys[0], Swap::new(Some(seen), next, NOW + 900, NOW))
        .await
        .unwrap();
    store
        .count_failure(&user.username_key, &user.id, NOW)
        .await
        .unwrap();
    store.reset_counter(keys[0]).await.unwrap();
    store.record_success(&user, rehash).await.unwrap();
    // The same, as the password grant writes them: the claim in one transaction (for an account,
    // and for a name that is no account), the success in another with what it starts.
    for (seen, user_id) in [(None, Some(user.id.as_str())), (Some(seen), None)] {
        let add = |key| WindowAdd {
            key,
            seen,
            ceiling: 100,
            window: 3600,
        };
        let claim = AttemptClaim {
            source: add(keys[2]),
            account: add(keys[1]),
            pair_key: keys[0],
            pair: Swap::new(seen, next, NOW + 900, NOW),
            username_key: &user.username_key,
            user_id,
            now: NOW,
        };
        store.claim_attempt(&claim).await.unwrap();
    }
    for follow in follows {
        let success = AttemptSuccess {
            windows: [(keys[1], NOW - 10), (keys[2], NOW - 10)],
            pair_key: keys[0],
            user: &user,
            rehash,
            follow,
            now: NOW,
        };
        store.settle_success(&success).await.unwrap();
    }
}

async fn register(store: &DynamoStore) {
    let mut user = NewUser {
        id: "id-emma".into(),
        username: "Emma".into(),
        username_key: "emma".into(),
        password_hash: "$2b$12$hash".into(),
        full_name: Some("Emma Example".into()),
        email: None,
    };
    store.create(&user).await.unwrap();
    user.full_name = None;
    store.create(&user).await.unwrap();
    // A name may start with "#" (it holds no whitespace): still an account key.
    user.username_key = "#emma".into();
    store.create(&user).await.unwrap();
    // With an address: its verification link.
    user.email = Some("emma@example.com".into());
    store.create(&user).await.unwrap();
    store
        .put_ticket(TicketKind::EmailVerification, "aGFzaA", "{}", NOW + 60, NOW)
        .await
        .unwrap();
}

async fn login(store: &DynamoStore) {
    // The password grant: the throttle (an outdated hash is replaced) and a new session.
    // What a right password starts, in the same transaction: a session, or an mfa_token.
    let mut started = session(0, false);
    started.holder = Holder::Password;
    let ticket = TicketWrite {
        kind: TicketKind::MfaToken,
        hash: "aGFzaA".into(),
        record: "{}".into(),
        expires_at: NOW + 300,
    };
    let follows = [Follow::Session(Box::new(started)), Follow::Ticket(ticket)];
    throttle(store, Some(("$2b$12$old", "$2b$12$new")), &follows).await;
    throttle(store, None, &follows).await;
    start_sessions(store).await;
    // The refresh grant: the session and its account, a rotation (or the retry of one), an end
    // on reuse.
    store.session("c2Vzc2lvbg").await.unwrap();
    store.credentials("emma").await.unwrap();
    for epoch in [0, 3] {
        let record = session(epoch, true);
        store.rotate_session(&record, &record).await.unwrap();
    }
    store.end_session("c2Vzc2lvbg").await.unwrap();
    // The code grant: the client, the code taken, its account and browser session, a client's
    // session (or, for a spent code, the end of the one its first redemption started).
    store.client("web").await.unwrap();
    store
        .take_ticket(TicketKind::AuthorizationCode, "aGFzaA", NOW)
        .await
        .unwrap();
    store
        .profile("id-emma", "Emma", "c2Vzc2lvbg")
        .await
        .unwrap();
    store.create_session(&session(3, false), NOW).await.unwrap();
    // The same as the exchange writes it: the code read, then taken with the session it starts.
    store
        .peek_ticket(TicketKind::AuthorizationCode, "aGFzaA", NOW)
        .await
        .unwrap();
    store
        .start_code_session("aGFzaA", &session(3, false), "YnJvd3Nlcg", NOW)
        .await
        .unwrap();
    // A second factor: the mfa_token, the code (a TOTP step or a recovery code), and a session
    // that passed it.
    store
        .put_ticket(TicketKind::MfaToken, "aGFzaA", "{}", NOW + 300, NOW)
        .await
        .unwrap();
    store
        .peek_ticket(TicketKind::MfaToken, "aGFzaA", NOW)
        .await
        .unwrap();
    store.accept_step(&user(), 7).await.unwrap();
    store.take_recovery_code(&user(), "aGFzaA").await.unwrap();
    let mut second = session(0, false);
    second.holder = Holder::Password;
    second.mfa = true;
    store.create_session(&second, NOW).await.unwrap();
    second_step(store, &Follow::Session(Box::new(second))).await;
}

/// An mfa_token's second step as `mfa::redeem_then` writes it: the read, the claim, the pass
/// (with `follow`, and without a step for a recovery code).
async fn second_step(store: &DynamoStore, follow: &Follow) {
    let counters = [
        "mfa token aGFzaA",
        "second factor id id-emma",
        "account id id-emma",
    ];
    store
        .second_step("aGFzaA", "emma", &counters, NOW)
        .await
        .unwrap();
    let adds = counters.map(|key| WindowAdd {
        key,
        seen: None,
        ceiling: 5,
        window: 300,
    });
    store.claim_places(&adds, NOW).await.unwrap();
    let give_back = [(counters[1], NOW), (counters[2], NOW)];
    for step in [Some(7), None] {
        let pass = SecondStepPass {
            user: &user(),
            step,
            ticket_hash: "aGFzaA",
            give_back: &give_back,
            follow,
            now: NOW,
        };
        store.pass_second_step(&pass).await.unwrap();
    }
}

async fn authorize(store: &DynamoStore) {
    // The client of an authorization request; a browser session's cookie (its session and
    // account).
    store.client("web").await.unwrap();
    store.session("c2Vzc2lvbg").await.unwrap();
    store.credentials("emma").await.unwrap();
    // The hosted sign-in: the throttle (an outdated hash is replaced), or a registration.
    throttle(
        store,
        Some(("$2b$12$old", "$2b$12$new")),
        &[Follow::Nothing],
    )
    .await;
    store
        .create(&NewUser {
            id: "id-emma".into(),
            username: "Emma".into(),
            username_key: "emma".into(),
            password_hash: "$2b$12$hash".into(),
            full_name: Some("Emma Example".into()),
            email: None,
        })
        .await
        .unwrap();
    // The browser session, the code, and RP-initiated logout's end of the session.
    let mut browser = session(0, false);
    browser.holder = Holder::Browser;
    store.create_session(&browser, NOW).await.unwrap();
    store
        .put_ticket(TicketKind::AuthorizationCode, "aGFzaA", "{}", NOW + 60, NOW)
        .await
        .unwrap();
    store.end_session("c2Vzc2lvbg").await.unwrap();
    // The second step of a sign-in: its mfa_token, the code, a browser session that passed it.
    store
        .put_ticket(TicketKind::MfaToken, "aGFzaA", "{}", NOW + 300, NOW)
        .await
        .unwrap();
    store
        .peek_ticket(TicketKind::MfaToken, "aGFzaA", NOW)
        .await
        .unwrap();
    store
        .take_ticket(TicketKind::MfaToken, "aGFzaA", NOW)
        .await
        .unwrap();
    store.accept_step(&user(), 7).await.unwrap();
    store.take_recovery_code(&user(), "aGFzaA").await.unwrap();
    let mut browser = session(0, false);
    browser.holder = Holder::Browser;
    browser.mfa = true;
    store.create_session(&browser, NOW).await.unwrap();
    second_step(store, &Follow::Nothing).await;
}

async fn me(store: &DynamoStore) {
    store
        .profile("id-emma", "Emma", "c2Vzc2lvbg")
        .await
        .unwrap();
}

async fn account(store: &DynamoStore) {
    // The bearer check, then the re-authentication through the throttle (never a rehash).
    store
        .profile("id-emma", "Emma", "c2Vzc2lvbg")
        .await
        .unwrap();
    throttle(store, None, &[Follow::Nothing]).await;
    // PUT /me/password: the change, then a new session (one that passed a second factor, too).
    store.change_password(&user(), "$2b$12$new").await.unwrap();
    start_sessions(store).await;
    let mut second = session(0, false);
    second.holder = Holder::Password;
    second.mfa = true;
    store.create_session(&second, NOW).await.unwrap();
    // Addresses: a change (releasing a verified old one), the verification link, its page and
    // its use; the reset request's lookup by address, its link, and the page and use of it.
    let verified = Credentials {
        email: Some("emma@example.com".into()),
        email_verified: true,
        ..user()
    };
    store.set_email(&user(), "new@example.com").await.unwrap();
    store.set_email(&verified, "new@example.com").await.unwrap();
    for kind in [TicketKind::EmailVerification, TicketKind::PasswordReset] {
        store
            .put_ticket(kind, "aGFzaA", "{}", NOW + 60, NOW)
            .await
            .unwrap();
        store.peek_ticket(kind, "aGFzaA", NOW).await.unwrap();
        store.take_ticket(kind, "aGFzaA", NOW).await.unwrap();
    }
    store
        .verify_email("id-emma", "emma", "new@example.com")
        .await
        .unwrap();
    store.verified_owner("new@example.com").await.unwrap();
    // Second factors: enrol, confirm, check (a step, a recovery code), new codes, off.
    store
        .set_pending_totp(&user(), "a1.c2VhbGVk")
        .await
        .unwrap();
    let codes = ["aGFzaA".to_string()];
    store
        .enable_totp(&user(), "a1.c2VhbGVk", 7, &codes)
        .await
        .unwrap();
    store.accept_step(&user(), 8).await.unwrap();
    store.take_recovery_code(&user(), "aGFzaA").await.unwrap();
    store.replace_recovery_codes(&user(), &codes).await.unwrap();
    store.disable_totp(&user()).await.unwrap();
    // DELETE /me, without and with a verified address to release.
    store.delete_account(&user()).await.unwrap();
    store.delete_account(&verified).await.unwrap();
}

async fn logout(store: &DynamoStore) {
    // A refresh token's session, ended (by the client presenting it).
    store.client("web").await.unwrap();
    store.session("c2Vzc2lvbg").await.unwrap();
    store.end_session("c2Vzc2lvbg").await.unwrap();
    // A bearer: the check, then one session or all of them.
    store
        .profile("id-emma", "Emma", "c2Vzc2lvbg")
        .await
        .unwrap();
    store.end_session("c2Vzc2lvbg").await.unwrap();
    store.end_all_sessions("id-emma", "emma").await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// A stand-in DynamoDB endpoint: records each request's operation and JSON body. Every UpdateItem
// fails its condition with an expired old item, so the store also sends what it sends after
// that (a window's restart, a rehash's fallback); anything else succeeds with nothing found.

struct Endpoint {
    port: u16,
    log: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Endpoint {
    fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&log);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &log));
            }
        });
        Endpoint { port, log }
    }

    fn store(&self) -> DynamoStore {
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .http_client(https)
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .build();
        DynamoStore {
            client: Client::from_conf(config),
            table: "users".into(),
        }
    }

    /// The requests recorded since the last call.
    fn take(&self) -> Vec<(String, Value)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<(String, Value)>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    loop {
        let mut operation = None;
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "x-amz-target" => {
                        operation = value.rsplit('.').next().map(str::to_string);
                    }
                    "content-length" => length = value.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let operation = operation.unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, answer) = match operation.as_str() {
            "UpdateItem" => (
                "400 Bad Request",
                serde_json::json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                    "message": "The conditional request failed",
                    "Item": {TTL_ATTRIBUTE: {"N": "0"}},
                }),
            ),
            "BatchGetItem" => (
                "200 OK",
                serde_json::json!({"Responses": {}, "UnprocessedKeys": {}}),
            ),
            _ => ("200 OK", serde_json::json!({})),
        };
        log.lock().unwrap().push((operation, body));
        let answer = answer.to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\n\
             Content-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests as IAM sees them, and the statements' evaluation.

/// One action IAM authorises (a transaction is one per item in it).
#[derive(Debug)]
struct Request {
    action: String,
    /// `dynamodb:LeadingKeys`.
    keys: Vec<String>,
    /// `dynamodb:Attributes`: the names the request names; `None` for a read of whole items.
    attributes: Option<BTreeSet<String>>,
    /// What `dynamodb:ReturnValues` may be: the request's `ReturnValues` (NONE when absent on a
    /// write) and its `ReturnValuesOnConditionCheckFailure`, each of which must be allowed.
    return_values: Vec<String>,
}

#[derive(Default)]
struct Usage {
    requests: usize,
    attributes: BTreeSet<String>,
    return_values: BTreeSet<String>,
}

fn requests(operation: &str, body: &Value) -> Vec<Request> {
    let key_of = |item: &Value| -> String {
        item[KEY]["S"]
            .as_str()
            .unwrap_or_else(|| panic!("{operation} without a string {KEY}: {body}"))
            .to_string()
    };
    match operation {
        "GetItem" => vec![Request {
            action: "dynamodb:GetItem".into(),
            keys: vec![key_of(&body["Key"])],
            attributes: projection(body),
            return_values: Vec::new(),
        }],
        "BatchGetItem" => {
            let tables = body["RequestItems"].as_object().expect("RequestItems");
            let mut keys = Vec::new();
            let mut attributes = None;
            for request in tables.values() {
                keys.extend(request["Keys"].as_array().expect("Keys").iter().map(key_of));
                attributes = projection(request);
            }
            vec![Request {
                action: "dynamodb:BatchGetItem".into(),
                keys,
                attributes,
                return_values: Vec::new(),
            }]
        }
        "PutItem" | "UpdateItem" | "DeleteItem" => vec![write(operation, body, true)],
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .expect("TransactItems")
            .iter()
            .map(|item| {
                let (kind, inner) = item
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .expect("a transaction item");
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    other => panic!("transaction item {other}"),
                };
                // Inside a transaction there is no ReturnValues, only the one on failure.
                let mut request = write(action, inner, false);
                if action != "ConditionCheckItem" && request.return_values.is_empty() {
                    request.return_values.push("NONE".into());
                }
                request
            })
            .collect(),
        other => panic!("the store sent {other}, which this test does not model: {body}"),
    }
}

/// A write (or a condition check): its key, its item's names and the names in its expressions.
fn write(operation: &str, body: &Value, standalone: bool) -> Request {
    let (key_field, item) = if operation == "PutItem" {
        ("Item", &body["Item"])
    } else {
        ("Key", &body["Key"])
    };
    let key = item[KEY]["S"]
        .as_str()
        .unwrap_or_else(|| panic!("{operation} without a string {KEY} in {key_field}: {body}"))
        .to_string();
    let mut attributes: BTreeSet<String> = item
        .as_object()
        .expect("an item or key")
        .keys()
        .cloned()
        .collect();
    let names = body["ExpressionAttributeNames"].clone();
    for field in ["UpdateExpression", "ConditionExpression"] {
        if let Some(expression) = body[field].as_str() {
            attributes.extend(expression_names(expression, &names));
        }
    }
    for legacy in ["AttributeUpdates", "Expected", "ProjectionExpression"] {
        assert!(body[legacy].is_null(), "{operation} uses {legacy}: {body}");
    }
    let mut return_values = Vec::new();
    if let Some(value) = body["ReturnValues"].as_str() {
        return_values.push(value.to_string());
    } else if standalone {
        return_values.push("NONE".into());
    }
    if let Some(value) = body["ReturnValuesOnConditionCheckFailure"].as_str() {
        return_values.push(value.to_string());
    }
    Request {
        action: format!("dynamodb:{operation}"),
        keys: vec![key],
        attributes: Some(attributes),
        return_values,
    }
}

/// The attributes a read asks for (with the key, which it always names), or `None`: all.
fn projection(request: &Value) -> Option<BTreeSet<String>> {
    let expression = request["ProjectionExpression"].as_str()?;
    let mut names = expression_names(expression, &request["ExpressionAttributeNames"]);
    names.insert(KEY.to_string());
    Some(names)
}

/// The attribute names in a DynamoDB expression (`#placeholders` resolved; values, functions
/// and keywords left out).
fn expression_names(expression: &str, names: &Value) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "BETWEEN", "IN",
    ];
    let chars: Vec<char> = expression.chars().collect();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !(c == '#' || c == ':' || c == '_' || c.is_alphabetic()) {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let next = chars[i..].iter().find(|c| !c.is_whitespace());
        match c {
            '#' => {
                let name = names[&word]
                    .as_str()
                    .unwrap_or_else(|| panic!("{word} is not defined for {expression:?}"));
                found.insert(name.to_string());
            }
            ':' => {}
            _ if next == Some(&'(') => {}
            _ if KEYWORDS.contains(&word.to_ascii_uppercase().as_str()) => {}
            _ => {
                found.insert(word);
            }
        }
    }
    found
}

/// An IAM-style match: `*` any run of characters, `?` any one.
fn glob(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One statement of a function's policy, as the template writes it.
#[derive(Debug)]
struct Statement {
    sid: String,
    effect: String,
    actions: Vec<String>,
    /// (operator, key) → values.
    conditions: BTreeMap<(String, String), Vec<String>>,
}

impl Statement {
    /// Whether this statement allows `request`, as IAM evaluates the condition keys the
    /// template uses (every condition must hold).
    fn allows(&self, request: &Request) -> bool {
        self.effect == "Allow"
            && self.actions.contains(&request.action)
            && self
                .conditions
                .iter()
                .all(|((operator, key), values)| holds(operator, key, values, request))
    }
}

fn holds(operator: &str, key: &str, policy: &[String], request: &Request) -> bool {
    let (for_all, operator) = match operator.strip_prefix("ForAllValues:") {
        Some(rest) => (true, rest),
        None => (false, operator),
    };
    let (if_exists, operator) = match operator.strip_suffix("IfExists") {
        Some(rest) => (true, rest),
        None => (false, operator),
    };
    let (negated, like) = match operator {
        "StringEquals" => (false, false),
        "StringNotEquals" => (true, false),
        "StringLike" => (false, true),
        "StringNotLike" => (true, true),
        other => panic!("operator {other} is not modelled"),
    };
    let matches = |value: &String| {
        let any = policy
            .iter()
            .any(|p| if like { glob(p, value) } else { p == value });
        any != negated
    };
    let context: Vec<String> = match key {
        "dynamodb:LeadingKeys" => request.keys.clone(),
        "dynamodb:Attributes" => match &request.attributes {
            Some(names) => names.iter().cloned().collect(),
            // A read of whole items: every attribute, never within a list.
            None => return false,
        },
        "dynamodb:ReturnValues" => request.return_values.clone(),
        other => panic!("condition key {other} is not modelled"),
    };
    let multivalued = key != "dynamodb:ReturnValues";
    assert_eq!(
        for_all, multivalued,
        "{key} needs ForAllValues exactly when it is multivalued"
    );
    if context.is_empty() {
        // ForAllValues over nothing holds; a single-valued key that is absent holds only with
        // IfExists.
        return for_all || if_exists;
    }
    context.iter().all(matches)
}

// ---------------------------------------------------------------------------------------------
// Reading the template.

/// The statements with a DynamoDB action among `function`'s policies.
fn table_statements(function: &str) -> Vec<Statement> {
    let Some(policies) = policies_of(function) else {
        return Vec::new();
    };
    let mut statements = Vec::new();
    for policy in policies.list() {
        for statement in policy.get("Statement").map(Yaml::list).unwrap_or_default() {
            let actions: Vec<String> = match statement.get("Action") {
                Some(Yaml::Scalar(action)) => vec![action.clone()],
                Some(Yaml::List(actions)) => actions.iter().map(Yaml::scalar).collect(),
                other => panic!("{function}: Action {other:?}"),
            };
            if !actions.iter().any(|a| a.starts_with("dynamodb:")) {
                continue;
            }
            let mut conditions = BTreeMap::new();
            for (operator, keys) in statement
                .get("Condition")
                .map(Yaml::map)
                .unwrap_or_default()
            {
                for (key, values) in keys.map() {
                    let values = match values {
                        Yaml::List(values) => values.iter().map(Yaml::scalar).collect(),
                        Yaml::Scalar(value) => vec![value],
                        Yaml::Map(_) => panic!("{function}: {key} is a map"),
                    };
                    conditions.insert((operator.clone(), key), values);
                }
            }
            statements.push(Statement {
                sid: statement
                    .get("Sid")
                    .map(Yaml::scalar)
                    .unwrap_or_else(|| panic!("{function}: a DynamoDB statement without a Sid")),
                effect: statement
                    .get("Effect")
                    .map(Yaml::scalar)
                    .unwrap_or_default(),
                actions,
                conditions,
            });
        }
    }
    statements
}

/// The parsed `Policies` of the resource `function`, if it has any.
fn policies_of(function: &str) -> Option<Yaml> {
    let lines: Vec<&str> = TEMPLATE.lines().collect();
    let header = format!("  {function}:");
    let start = lines
        .iter()
        .position(|l| *l == header)
        .unwrap_or_else(|| panic!("template.yaml has no resource {function}"));
    let indent = |l: &str| l.len() - l.trim_start().len();
    let significant = |l: &&str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let resource: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| !significant(l) || indent(l) > 2)
        .copied()
        .collect();
    let at = resource.iter().position(|l| l.trim() == "Policies:")?;
    let depth = indent(resource[at]);
    let block: Vec<Line> = resource[at + 1..]
        .iter()
        .filter(|l| significant(l))
        .take_while(|l| indent(l) > depth)
        .map(|l| Line {
            indent: indent(l),
            text: strip_comment(l.trim()).to_string(),
        })
        .collect();
    let mut lines = block;
    let mut i = 0;
    let first = lines.first()?.indent;
    let node = parse_node(&mut lines, &mut i, first);
    assert_eq!(i, lines.len(), "{function}: Policies not read to the end");
    Some(node)
}

#[derive(Debug, Clone)]
enum Yaml {
    Scalar(String),
    List(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn list(&self) -> Vec<Yaml> {
        match self {
            Yaml::List(items) => items.clone(),
            other => panic!("expected a list, found {other:?}"),
        }
    }

    fn map(&self) -> Vec<(String, Yaml)> {
        match self {
            Yaml::Map(entries) => entries.clone(),
            other => panic!("expected a map, found {other:?}"),
        }
    }

    fn scalar(&self) -> String {
        match self {
            Yaml::Scalar(s) => s.clone(),
            other => panic!("expected a scalar, found {other:?}"),
        }
    }
}

struct Line {
    indent: usize,
    text: String,
}

/// A line without its ` # comment` (outside quotes).
fn strip_comment(text: &str) -> &str {
    let mut quote = None;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b'#') if i > 0 && bytes[i - 1] == b' ' => return text[..i].trim_end(),
            _ => {}
        }
    }
    text
}

fn parse_node(lines: &mut [Line], i: &mut usize, indent: usize) -> Yaml {
    if lines[*i].text.starts_with("- ") {
        parse_list(lines, i, indent)
    } else {
        parse_map(lines, i, indent)
    }
}

fn parse_list(lines: &mut [Line], i: &mut usize, indent: usize) -> Yaml {
    let mut items = Vec::new();
    while *i < lines.len() && lines[*i].indent == indent && lines[*i].text.starts_with("- ") {
        let rest = lines[*i].text[2..].to_string();
        let inner = indent + 2 + (rest.len() - rest.trim_start().len());
        let rest = rest.trim_start().to_string();
        if !rest.starts_with(['[', '"', '\'', '!']) && split_entry(&rest).is_some() {
            lines[*i] = Line {
                indent: inner,
                text: rest,
            };
            items.push(parse_map(lines, i, inner));
        } else {
            items.push(inline(&rest));
            *i += 1;
        }
    }
    Yaml::List(items)
}

fn parse_map(lines: &mut [Line], i: &mut usize, indent: usize) -> Yaml {
    let mut entries = Vec::new();
    while *i < lines.len() && lines[*i].indent == indent && !lines[*i].text.starts_with("- ") {
        let (key, value) = split_entry(&lines[*i].text)
            .unwrap_or_else(|| panic!("not a mapping entry: {:?}", lines[*i].text));
        let value = value.to_string();
        *i += 1;
        let nested = *i < lines.len()
            && (lines[*i].indent > indent
                || (lines[*i].indent == indent && lines[*i].text.starts_with("- ")));
        // A bare tag (`Resource: !If`) takes the block below as its value.
        let node =
            if nested && (value.is_empty() || (value.starts_with('!') && !value.contains(' '))) {
                let child = lines[*i].indent;
                parse_node(lines, i, child)
            } else {
                inline(&value)
            };
        entries.push((key, node));
    }
    Yaml::Map(entries)
}

/// `key: value` or `key:` (a key may hold colons, as `dynamodb:Attributes` does).
fn split_entry(text: &str) -> Option<(String, &str)> {
    let mut quote = None;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b':') if i + 1 == bytes.len() => return Some((text[..i].to_string(), "")),
            (None, b':') if bytes[i + 1] == b' ' => {
                return Some((text[..i].to_string(), text[i + 2..].trim()));
            }
            _ => {}
        }
    }
    None
}

fn inline(value: &str) -> Yaml {
    let chars: Vec<char> = value.trim().chars().collect();
    let mut at = 0;
    let node = flow(&chars, &mut at);
    let rest: String = chars[at..].iter().collect();
    assert!(rest.trim().is_empty(), "unread {rest:?} in {value:?}");
    node
}

/// One flow value: `[a, "b", [c]]`, a quoted or plain scalar, or a tag with its value (kept as
/// the value alone for a list, as text otherwise).
fn flow(chars: &[char], at: &mut usize) -> Yaml {
    let skip = |at: &mut usize| {
        while *at < chars.len() && chars[*at] == ' ' {
            *at += 1;
        }
    };
    skip(at);
    match chars.get(*at) {
        Some('[') => {
            *at += 1;
            let mut items = Vec::new();
            loop {
                skip(at);
                match chars.get(*at) {
                    Some(']') => {
                        *at += 1;
                        return Yaml::List(items);
                    }
                    Some(',') => *at += 1,
                    Some(_) => items.push(flow(chars, at)),
                    None => panic!("unclosed flow list"),
                }
            }
        }
        Some(&q @ ('"' | '\'')) => {
            *at += 1;
            let mut text = String::new();
            while let Some(&c) = chars.get(*at) {
                *at += 1;
                if c == q {
                    if q == '\'' && chars.get(*at) == Some(&'\'') {
                        text.push('\'');
                        *at += 1;
                        continue;
                    }
                    return Yaml::Scalar(text);
                }
                if q == '"' && c == '\\' {
                    text.extend(chars.get(*at));
                    *at += 1;
                    continue;
                }
                text.push(c);
            }
            panic!("unclosed quote")
        }
        _ => {
            let start = *at;
            while let Some(&c) = chars.get(*at) {
                if c == ',' || c == ']' {
                    break;
                }
                if c == '[' {
                    // A tag followed by a list: `!Join [",", ...]`.
                    return flow(chars, at);
                }
                *at += 1;
            }
            Yaml::Scalar(
                chars[start..*at]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_string(),
            )
        }
    }
}
