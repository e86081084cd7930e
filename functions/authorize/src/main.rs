//! The `authorize` Lambda function (the authorization endpoint, the hosted sign-in and
//! registration pages, RP-initiated logout): builds its state once per cold start, for the
//! configured store's concrete backend, then serves requests.

shared::function_main!(authorize);
