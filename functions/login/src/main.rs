//! The `login` Lambda function (the token endpoint (password and refresh grants)): builds its state once per cold start, for the
//! configured store's concrete backend, then serves requests.

shared::function_main!(login);
