//! A private key kept encrypted in SSM Parameter Store (`AUTH_SIGNING_KEY=ssm:NAME`): one
//! `GetParameter` with decryption per cold start (SSM calls KMS `Decrypt` under the parameter's
//! key), then every signature is made in process by a [`LocalSigner`]. Issuance is bounded by the
//! functions' concurrency, not by KMS's account-wide quota on RSA requests; the price is that the
//! key is in the signing functions' memory (see README, "Signing modes").

use super::{KeyError, LocalSigner};
use crate::aws;

/// The signer whose PEM private key is the `SecureString` parameter `name`.
pub async fn from_parameter(
    config: &aws_config::SdkConfig,
    name: &str,
) -> Result<LocalSigner, KeyError> {
    let error = |reason: String| KeyError {
        source_name: format!("ssm:{name}"),
        reason,
    };
    let out = aws_sdk_ssm::Client::new(config)
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| error(aws::describe(&e)))?;
    let parameter = out
        .parameter
        .ok_or_else(|| error("no parameter returned".into()))?;
    if parameter.r#type != Some(aws_sdk_ssm::types::ParameterType::SecureString) {
        // A plain String would be readable by anyone who may describe parameters.
        return Err(error("not a SecureString parameter".into()));
    }
    let pem = parameter
        .value
        .ok_or_else(|| error("the parameter has no value".into()))?;
    LocalSigner::from_pem(&pem).map_err(error)
}
