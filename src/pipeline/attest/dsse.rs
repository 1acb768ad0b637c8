//! DSSE envelopes (Dead Simple Signing Envelope, secure-systems-lab/dsse v1.0): a payload
//! and its type, signed over their pre-authentication encoding ([`pae`]) rather than over the
//! JSON, so the envelope's own bytes may be reformatted without breaking a signature.
//!
//! Keys are ECDSA P-256 in PEM: a private key as `openssl ecparam -name prime256v1 -genkey
//! -noout` writes it (SEC1, `EC PRIVATE KEY`) or as PKCS#8 (`PRIVATE KEY`, what `openssl
//! genpkey` and `openssl pkcs8 -topk8 -nocrypt` write); a public key as SPKI (`PUBLIC KEY`,
//! `openssl ec -pubout`, cosign's `cosign.pub`). Signatures are ASN.1 DER over SHA-256
//! (`ecdsa-sha2-nistp256`, what securesystemslib and cosign verify); a key's `keyid` is the
//! hex SHA-256 of its SPKI DER.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::adapters::fsutil::hex;
use crate::core::error::{Error, Result};

/// The DSSE envelope's own media type, as an OCI artifact (what cosign stores attestations
/// as): the blob is an envelope, not a bare in-toto Statement.
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// A DSSE envelope (the JSON form): `payload` is the base64 of the signed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// What the payload is (`application/vnd.in-toto+json`).
    pub payload_type: String,
    /// The payload, base64 (standard alphabet, padded).
    pub payload: String,
    /// Its signatures; none for an unsigned envelope.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Which key made it (hex SHA-256 of its SPKI DER).
    pub keyid: String,
    /// The DER signature, base64.
    pub sig: String,
}

/// The pre-authentication encoding DSSE signs: `DSSEv1 LEN(type) type LEN(body) body`,
/// separated by single spaces, lengths as ASCII decimal byte counts.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A private key that signs envelopes.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    /// Its keyid.
    pub keyid: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("keyid", &self.keyid)
            .finish()
    }
}

/// A public key that checks envelopes' signatures.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: VerifyingKey,
    /// Its keyid.
    pub keyid: String,
}

fn key_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        what: "signing key",
        value: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read_pem(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| key_error(path, format!("cannot read it: {e}")))?;
    String::from_utf8(bytes).map_err(|_| key_error(path, "it is not a PEM file"))
}

fn keyid(key: &VerifyingKey) -> String {
    let der = key
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default();
    hex(&Sha256::digest(der))
}

const KEY_FORMS: &str = "expected an ECDSA P-256 private key in PEM, SEC1 (`openssl ecparam -name prime256v1 -genkey -noout`) or unencrypted PKCS#8 (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)";

impl Signer {
    /// Parses a private key's PEM (SEC1 `EC PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> std::result::Result<Signer, String> {
        let key = if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            p256::SecretKey::from_sec1_pem(pem)
                .map(SigningKey::from)
                .map_err(|e| format!("its EC PRIVATE KEY is not a P-256 key ({e})"))?
        } else if pem.contains("-----BEGIN PRIVATE KEY-----") {
            SigningKey::from_pkcs8_pem(pem)
                .map_err(|e| format!("its PRIVATE KEY is not an ECDSA P-256 key ({e})"))?
        } else if pem.contains("ENCRYPTED") {
            return Err(format!(
                "it is encrypted, and only unencrypted keys are read: {KEY_FORMS}"
            ));
        } else {
            return Err(KEY_FORMS.to_string());
        };
        let keyid = keyid(key.verifying_key());
        Ok(Signer { key, keyid })
    }

    /// Reads the private key at `path`; a file that is not one is invalid input.
    pub fn read(path: &Path) -> Result<Signer> {
        Signer::from_pem(&read_pem(path)?).map_err(|reason| key_error(path, reason))
    }

    /// Its public half.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            key: *self.key.verifying_key(),
            keyid: self.keyid.clone(),
        }
    }

    /// `payload` of `payload_type` in an envelope signed by this key.
    pub fn sign(&self, payload_type: &str, payload: &[u8]) -> Envelope {
        let signature: Signature = self.key.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload: BASE64.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: self.keyid.clone(),
                sig: BASE64.encode(signature.to_der().as_bytes()),
            }],
        }
    }
}

impl Verifier {
    /// Parses a public key's PEM (SPKI `PUBLIC KEY`); a private key's PEM gives its public
    /// half.
    pub fn from_pem(pem: &str) -> std::result::Result<Verifier, String> {
        if pem.contains("PRIVATE KEY-----") {
            return Signer::from_pem(pem).map(|s| s.verifier());
        }
        let key = VerifyingKey::from_public_key_pem(pem).map_err(|e| {
            format!(
                "expected an ECDSA P-256 public key in PEM (`openssl ec -pubout`, cosign.pub): {e}"
            )
        })?;
        Ok(Verifier {
            keyid: keyid(&key),
            key,
        })
    }

    /// Reads the public key at `path`; a file that is not one is invalid input.
    pub fn read(path: &Path) -> Result<Verifier> {
        Verifier::from_pem(&read_pem(path)?).map_err(|reason| Error::InvalidInput {
            what: "public key",
            value: path.display().to_string(),
            reason,
        })
    }

    /// Whether one of `envelope`'s signatures is this key's, over its payload.
    pub fn verifies(&self, envelope: &Envelope) -> bool {
        let Ok(payload) = envelope.payload_bytes() else {
            return false;
        };
        let message = pae(&envelope.payload_type, &payload);
        envelope.signatures.iter().any(|s| {
            BASE64
                .decode(&s.sig)
                .ok()
                .and_then(|der| Signature::from_der(&der).ok())
                .is_some_and(|sig| self.key.verify(&message, &sig).is_ok())
        })
    }
}

impl Envelope {
    /// `payload` of `payload_type`, unsigned.
    pub fn unsigned(payload_type: &str, payload: &[u8]) -> Envelope {
        Envelope {
            payload_type: payload_type.to_string(),
            payload: BASE64.encode(payload),
            signatures: Vec::new(),
        }
    }

    /// The payload's bytes.
    pub fn payload_bytes(&self) -> std::result::Result<Vec<u8>, base64::DecodeError> {
        BASE64.decode(&self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl ecparam -name prime256v1 -genkey -noout` and the same key as PKCS#8.
    const SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIHekzvl1rjtCnG8fjVnaLTrHvn5uIM3bYUZV+lvINNE/oAoGCCqGSM49
AwEHoUQDQgAEAKEYMe1ouq4dqRHVocwjOBiKz20CNzNlR3haivPTDY2hcfl9lldz
38JyjSbd1r0c5iroSbPnLRz2cWl1el8fdQ==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn pae_is_the_specs() {
        // DSSE's own test vector.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn a_signed_envelope_verifies_with_its_key_only() {
        let signer = Signer::from_pem(SEC1).expect("a SEC1 P-256 key");
        let envelope = signer.sign("application/vnd.in-toto+json", b"{}");
        assert_eq!(envelope.signatures[0].keyid, signer.keyid);
        assert!(signer.verifier().verifies(&envelope));
        let mut forged = envelope.clone();
        forged.payload = BASE64.encode(b"{ }");
        assert!(!signer.verifier().verifies(&forged));
        let mut retyped = envelope.clone();
        retyped.payload_type = "text/plain".into();
        assert!(!signer.verifier().verifies(&retyped));
        let other = Signer {
            key: SigningKey::from_slice(&[7u8; 32]).unwrap(),
            keyid: String::new(),
        };
        assert!(!other.verifier().verifies(&envelope));
        assert!(!signer
            .verifier()
            .verifies(&Envelope::unsigned("application/vnd.in-toto+json", b"{}")));
    }

    #[test]
    fn pkcs8_and_public_pems_are_read() {
        let sec1 = Signer::from_pem(SEC1).unwrap();
        let pkcs8 = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&sec1.key, Default::default())
            .unwrap()
            .to_string();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(Signer::from_pem(&pkcs8).unwrap().keyid, sec1.keyid);
        let public = sec1
            .key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let verifier = Verifier::from_pem(&public).unwrap();
        assert_eq!(verifier.keyid, sec1.keyid);
        assert!(verifier.verifies(&sec1.sign("t", b"p")));
    }

    #[test]
    fn other_files_are_refused_with_the_forms_read() {
        let refused = |pem: &str| Signer::from_pem(pem).unwrap_err();
        assert!(refused("hello").contains("ECDSA P-256"));
        assert!(refused("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n").contains("encrypted"));
        assert!(
            refused("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
                .contains("not a P-256 key")
        );
        assert!(
            Verifier::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
    }
}
