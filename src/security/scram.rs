//! SASL SCRAM-SHA-256 (RFC 5802, RFC 7677) and PLAIN (RFC 4616): the
//! server's exchange, shared by both listeners, and the client's, used by
//! the Rust client (and through it the C ABI, Python, C++ and the CLI).
//!
//! ```text
//! client-first   n,,n=USER,r=CNONCE
//! server-first   r=CNONCE+SNONCE,s=BASE64(SALT),i=ITERATIONS
//! client-final   c=biws,r=CNONCE+SNONCE,p=BASE64(CLIENT_PROOF)
//! server-final   v=BASE64(SERVER_SIGNATURE)    (or e=invalid-proof ...)
//! ```
//!
//! Only the SCRAM credentials are kept (salt, iterations, StoredKey,
//! ServerKey), never a password: PLAIN derives the same keys from the
//! password it is given and compares.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
pub const PLAIN: &str = "PLAIN";

/// PBKDF2 rounds for new credentials (Kafka's minimum, and RFC 7677's).
pub const ITERATIONS_DEFAULT: u32 = 4096;
/// Fewest and most rounds accepted in a stored credential or from a server.
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 1 << 20;
/// Bytes of a new salt and of a nonce's random part.
pub const SALT_BYTES: usize = 16;
pub const NONCE_BYTES: usize = 18;
/// Longest SASL message accepted from a peer.
pub const SASL_MESSAGE_BYTES_MAX: usize = 1024;
/// Longest user name.
pub const USER_NAME_BYTES_MAX: usize = 256;
/// Longest password.
pub const PASSWORD_BYTES_MAX: usize = 1024;

type HmacSha256 = Hmac<Sha256>;

/// A user's stored SCRAM-SHA-256 credential.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credential {
    #[serde(with = "base64_field")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "base64_field")]
    pub stored_key: Vec<u8>,
    #[serde(with = "base64_field")]
    pub server_key: Vec<u8>,
}

mod base64_field {
    use super::BASE64;
    use base64::Engine as _;
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(deserializer)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// RFC 5802's Hi(): PBKDF2-HMAC-SHA-256 with one output block.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = Vec::with_capacity(salt.len() + 4);
    first.extend_from_slice(salt);
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &first);
    let mut result = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (r, x) in result.iter_mut().zip(u.iter()) {
            *r ^= x;
        }
    }
    result
}

fn keys(salted: &[u8; 32]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let client_key = hmac(salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac(salted, b"Server Key");
    (client_key, stored_key, server_key)
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Random bytes from the kernel.
pub fn random_bytes(out: &mut [u8]) -> Result<(), String> {
    let mut filled = 0;
    while let Some(rest) = out.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        // SAFETY: getrandom(2) writes at most `rest.len()` bytes into `rest`,
        // a live, writable slice.
        let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if got < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("cannot read random bytes: {error}"));
        }
        filled += got as usize;
    }
    Ok(())
}

fn nonce() -> Result<String, String> {
    let mut bytes = [0u8; NONCE_BYTES];
    random_bytes(&mut bytes)?;
    Ok(BASE64.encode(bytes))
}

impl Credential {
    /// A new credential for `password`, with a fresh salt.
    pub fn new(password: &str, iterations: u32) -> Result<Credential, String> {
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(format!("iterations must be between {ITERATIONS_MIN} and {ITERATIONS_MAX}"));
        }
        let mut salt = vec![0u8; SALT_BYTES];
        random_bytes(&mut salt)?;
        Ok(Credential::derive(password, salt, iterations))
    }

    fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> Credential {
        let (_, stored_key, server_key) = keys(&salted_password(password.as_bytes(), &salt, iterations));
        Credential { salt, iterations, stored_key: stored_key.to_vec(), server_key: server_key.to_vec() }
    }

    /// Whether `password` is this credential's (PLAIN).
    pub fn matches(&self, password: &str) -> bool {
        let (_, stored_key, _) = keys(&salted_password(password.as_bytes(), &self.salt, self.iterations));
        same(&stored_key, &self.stored_key)
    }
}

/// Why an exchange failed. The message is safe to show the client: it never
/// says whether the user exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// Unreadable message, or a step out of order.
    Malformed(&'static str),
    /// Unknown user or wrong password.
    Failed,
    UnsupportedMechanism,
}

impl std::fmt::Display for SaslError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaslError::Malformed(what) => write!(f, "malformed SASL message: {what}"),
            SaslError::Failed => write!(f, "authentication failed: unknown user or wrong password"),
            SaslError::UnsupportedMechanism => {
                write!(f, "unsupported SASL mechanism (supported: {SCRAM_SHA_256}, {PLAIN})")
            }
        }
    }
}

/// What one step of the server's exchange produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this to the client and wait for its next message.
    Continue(Vec<u8>),
    /// Authenticated as this user; send the bytes (empty for PLAIN).
    Done { user: String, reply: Vec<u8> },
}

/// The server side of one exchange.
pub enum ServerExchange {
    Plain,
    ScramFirst,
    ScramFinal {
        user: String,
        credential: Option<Credential>,
        /// The client-first's GS2 header ("n,," or "n,a=USER,"), which the
        /// client-final's channel binding must repeat.
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Finished,
}

/// A SCRAM attribute value: `name=` then up to the next comma.
fn attribute(part: Option<&str>, name: char) -> Result<&str, SaslError> {
    let part = part.ok_or(SaslError::Malformed("an attribute is missing"))?;
    let mut prefix = [0u8; 4];
    let prefix = name.encode_utf8(&mut prefix);
    part.strip_prefix(&*prefix)
        .and_then(|rest| rest.strip_prefix('='))
        .ok_or(SaslError::Malformed("an attribute is not the one expected"))
}

/// A SCRAM user name with `=2C` and `=3D` decoded.
fn saslname(name: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some((before, after)) = rest.split_once('=') {
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("2C") {
            out.push(',');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("3D") {
            out.push('=');
            rest = tail;
        } else {
            return Err(SaslError::Malformed("bad escape in the user name"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn escape_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

impl ServerExchange {
    pub fn new(mechanism: &str) -> Result<ServerExchange, SaslError> {
        match mechanism {
            SCRAM_SHA_256 => Ok(ServerExchange::ScramFirst),
            PLAIN => Ok(ServerExchange::Plain),
            _ => Err(SaslError::UnsupportedMechanism),
        }
    }

    /// Takes the client's next message; `lookup` finds a user's credential.
    pub fn step(&mut self, message: &[u8], lookup: impl Fn(&str) -> Option<Credential>) -> Result<Step, SaslError> {
        if message.len() > SASL_MESSAGE_BYTES_MAX {
            return Err(SaslError::Malformed("message too long"));
        }
        let text = std::str::from_utf8(message).map_err(|_| SaslError::Malformed("not UTF-8"))?;
        match std::mem::replace(self, ServerExchange::Finished) {
            ServerExchange::Plain => {
                // authzid NUL authcid NUL password
                let mut parts = message.split(|b| *b == 0);
                let (Some(authzid), Some(user), Some(password), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(SaslError::Malformed("PLAIN wants authzid NUL user NUL password"));
                };
                let utf8 = |b: &[u8]| std::str::from_utf8(b).map(str::to_owned);
                let (Ok(authzid), Ok(user), Ok(password)) = (utf8(authzid), utf8(user), utf8(password)) else {
                    return Err(SaslError::Malformed("not UTF-8"));
                };
                if !authzid.is_empty() && authzid != user {
                    return Err(SaslError::Failed);
                }
                match lookup(&user) {
                    Some(credential) if credential.matches(&password) => Ok(Step::Done { user, reply: Vec::new() }),
                    _ => Err(SaslError::Failed),
                }
            }
            ServerExchange::ScramFirst => {
                let bare = match text.strip_prefix("n,") {
                    // An authzid, if present, must be the user itself (checked below).
                    Some(rest) => rest.split_once(','),
                    None if text.starts_with("y,") || text.starts_with("p=") => {
                        return Err(SaslError::Malformed("channel binding is not supported"))
                    }
                    None => None,
                };
                let (authzid, bare) = bare.ok_or(SaslError::Malformed("client-first must start with n,"))?;
                let mut parts = bare.split(',');
                let first = parts.next();
                if first.is_some_and(|p| p.starts_with("m=")) {
                    return Err(SaslError::Malformed("mandatory extensions are not supported"));
                }
                let user = saslname(attribute(first, 'n')?)?;
                let client_nonce = attribute(parts.next(), 'r')?;
                if user.is_empty() || user.len() > USER_NAME_BYTES_MAX || client_nonce.is_empty() {
                    return Err(SaslError::Malformed("empty user or nonce"));
                }
                if !authzid.is_empty() && saslname(attribute(Some(authzid), 'a')?)? != user {
                    return Err(SaslError::Failed);
                }
                // An unknown user gets a made-up salt, and fails at the proof,
                // so the answer does not say which users exist.
                let credential = lookup(&user);
                let (salt, iterations) = match &credential {
                    Some(credential) => (credential.salt.clone(), credential.iterations),
                    None => (hmac(b"ringmq unknown user", user.as_bytes())[..SALT_BYTES].to_vec(), ITERATIONS_DEFAULT),
                };
                let nonce = format!("{client_nonce}{}", nonce().map_err(|_| SaslError::Malformed("no randomness"))?);
                let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(salt));
                *self = ServerExchange::ScramFinal {
                    user,
                    credential,
                    gs2_header: text.get(..text.len() - bare.len()).unwrap_or_default().to_owned(),
                    client_first_bare: bare.to_owned(),
                    server_first: server_first.clone(),
                    nonce,
                };
                Ok(Step::Continue(server_first.into_bytes()))
            }
            ServerExchange::ScramFinal { user, credential, gs2_header, client_first_bare, server_first, nonce } => {
                let (without_proof, proof) =
                    text.rsplit_once(",p=").ok_or(SaslError::Malformed("client-final has no proof"))?;
                let mut parts = without_proof.split(',');
                let binding = attribute(parts.next(), 'c')?;
                let echoed = attribute(parts.next(), 'r')?;
                // "biws" is base64("n,,"); with an authzid, its own header.
                let binding_matches = BASE64.decode(binding).is_ok_and(|header| header == gs2_header.as_bytes());
                if !binding_matches || echoed != nonce {
                    return Err(SaslError::Malformed("client-final does not match the exchange"));
                }
                let proof = BASE64.decode(proof).map_err(|_| SaslError::Malformed("proof is not base64"))?;
                let Some(credential) = credential else { return Err(SaslError::Failed) };
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let signature = hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Err(SaslError::Failed);
                }
                let client_key: Vec<u8> = proof.iter().zip(signature.iter()).map(|(p, s)| p ^ s).collect();
                let stored: [u8; 32] = Sha256::digest(&client_key).into();
                if !same(&stored, &credential.stored_key) {
                    return Err(SaslError::Failed);
                }
                let server_signature = hmac(&credential.server_key, auth_message.as_bytes());
                Ok(Step::Done { user, reply: format!("v={}", BASE64.encode(server_signature)).into_bytes() })
            }
            ServerExchange::Finished => Err(SaslError::Malformed("the exchange is over")),
        }
    }
}

/// The client side of a SCRAM-SHA-256 exchange.
pub struct ScramClient {
    user: String,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    pub fn new(user: &str, password: &str) -> Result<ScramClient, String> {
        let client_nonce = nonce()?;
        let client_first_bare = format!("n={},r={client_nonce}", escape_saslname(user));
        Ok(ScramClient {
            user: user.to_owned(),
            password: password.to_owned(),
            client_nonce,
            client_first_bare,
            server_signature: None,
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final for the server's first message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let bad = |what: &str| format!("the server's SCRAM first message is unusable: {what}");
        let text = std::str::from_utf8(server_first).map_err(|_| bad("not UTF-8"))?;
        let mut parts = text.split(',');
        let nonce = attribute(parts.next(), 'r').map_err(|e| bad(&e.to_string()))?;
        let salt = attribute(parts.next(), 's').map_err(|e| bad(&e.to_string()))?;
        let iterations = attribute(parts.next(), 'i').map_err(|e| bad(&e.to_string()))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(bad("its nonce does not extend ours"));
        }
        let salt = BASE64.decode(salt).map_err(|_| bad("the salt is not base64"))?;
        let iterations: u32 = iterations.parse().map_err(|_| bad("iterations is not a number"))?;
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(bad("iterations out of range"));
        }
        let (client_key, stored_key, server_key) = keys(&salted_password(self.password.as_bytes(), &salt, iterations));
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature.iter()).map(|(k, s)| k ^ s).collect();
        self.server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: it proves the server knows the
    /// credential too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "the server's SCRAM final message is not UTF-8")?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(format!("the server refused the SCRAM proof: {error}"));
        }
        let signature = text.strip_prefix("v=").and_then(|v| BASE64.decode(v).ok());
        match (signature, self.server_signature) {
            (Some(got), Some(expected)) if same(&got, &expected) => Ok(()),
            _ => Err("the server's SCRAM signature is wrong: it does not know this user's credential".into()),
        }
    }
}

/// A PLAIN message: NUL user NUL password.
pub fn plain_message(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup_of(credential: &Credential) -> impl Fn(&str) -> Option<Credential> + '_ {
        move |user| (user == "alice").then(|| credential.clone())
    }

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let (client_key, stored_key, server_key) = keys(&salted_password(b"pencil", &salt, 4096));
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature.iter()).map(|(k, s)| k ^ s).collect();
        assert_eq!(BASE64.encode(proof), "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert_eq!(BASE64.encode(hmac(&server_key, auth.as_bytes())), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn scram_client_and_server_agree_and_a_wrong_password_fails() {
        let credential = Credential::new("secret", ITERATIONS_DEFAULT).unwrap();
        for (password, accepted) in [("secret", true), ("Secret", false)] {
            let mut client = ScramClient::new("alice", password).unwrap();
            let mut server = ServerExchange::new(SCRAM_SHA_256).unwrap();
            let Step::Continue(first) = server.step(&client.client_first(), lookup_of(&credential)).unwrap() else {
                panic!("SCRAM has two rounds")
            };
            let last = client.client_final(&first).unwrap();
            match server.step(&last, lookup_of(&credential)) {
                Ok(Step::Done { user, reply }) => {
                    assert!(accepted);
                    assert_eq!(user, "alice");
                    client.verify_server_final(&reply).unwrap();
                }
                Err(error) => {
                    assert!(!accepted);
                    assert_eq!(error, SaslError::Failed);
                }
                Ok(step) => panic!("unexpected {step:?}"),
            }
        }
    }

    #[test]
    fn an_unknown_user_gets_a_first_message_and_then_the_same_failure() {
        let credential = Credential::new("secret", ITERATIONS_DEFAULT).unwrap();
        let mut client = ScramClient::new("mallory", "secret").unwrap();
        let mut server = ServerExchange::new(SCRAM_SHA_256).unwrap();
        let Ok(Step::Continue(first)) = server.step(&client.client_first(), lookup_of(&credential)) else {
            panic!("an unknown user is not told apart at the first step")
        };
        let last = client.client_final(&first).unwrap();
        assert_eq!(server.step(&last, lookup_of(&credential)), Err(SaslError::Failed));
    }

    #[test]
    fn plain_checks_the_password_against_the_stored_keys() {
        let credential = Credential::new("secret", ITERATIONS_DEFAULT).unwrap();
        let mut server = ServerExchange::new(PLAIN).unwrap();
        assert_eq!(
            server.step(&plain_message("alice", "secret"), lookup_of(&credential)),
            Ok(Step::Done { user: "alice".into(), reply: Vec::new() })
        );
        let mut server = ServerExchange::new(PLAIN).unwrap();
        assert_eq!(server.step(&plain_message("alice", "nope"), lookup_of(&credential)), Err(SaslError::Failed));
        let mut server = ServerExchange::new(PLAIN).unwrap();
        assert!(matches!(server.step(b"alice", lookup_of(&credential)), Err(SaslError::Malformed(_))));
    }

    #[test]
    fn garbage_and_out_of_order_messages_are_refused_without_panics() {
        let credential = Credential::new("secret", ITERATIONS_DEFAULT).unwrap();
        for message in [&b""[..], b"n,", b"n,,", b"n,,n=", b"n,,r=x,n=y", b"y,,n=a,r=b", b"n,,n=a=ZZ,r=b", &[0xff; 8]] {
            let mut server = ServerExchange::new(SCRAM_SHA_256).unwrap();
            assert!(server.step(message, lookup_of(&credential)).is_err(), "{message:?}");
        }
        let mut server = ServerExchange::new(SCRAM_SHA_256).unwrap();
        assert!(server.step(&vec![b'a'; SASL_MESSAGE_BYTES_MAX + 1], lookup_of(&credential)).is_err());
        assert!(ServerExchange::new("GSSAPI").is_err());
        let client = ScramClient::new("alice", "secret").unwrap();
        let mut server = ServerExchange::new(SCRAM_SHA_256).unwrap();
        server.step(&client.client_first(), lookup_of(&credential)).unwrap();
        assert!(server.step(b"c=biws,r=wrong,p=AAAA", lookup_of(&credential)).is_err());
        assert!(server.step(b"anything", lookup_of(&credential)).is_err(), "the exchange is over after a failure");
    }

    #[test]
    fn user_names_with_commas_and_equals_round_trip() {
        assert_eq!(saslname(&escape_saslname("a,b=c")).unwrap(), "a,b=c");
    }
}
