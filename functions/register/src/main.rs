//! The `register` Lambda function (creates accounts; loads no key): builds its state once per cold start, for the
//! configured store's concrete backend, then serves requests.

shared::function_main!(register);
