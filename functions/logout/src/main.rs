//! The `logout` Lambda function (ends sessions; loads only the public key): builds its state once per cold start, for the
//! configured store's concrete backend, then serves requests.

shared::function_main!(logout);
