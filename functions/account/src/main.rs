//! The `account` Lambda function (password change and account deletion, behind re-authentication): builds its state once per cold start, for the
//! configured store's concrete backend, then serves requests.

shared::function_main!(account);
