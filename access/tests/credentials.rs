//! The credentials file, checked credentials and JWTs, as `http-front`
//! will use them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use access::{
    from_headers, hash_secret, mint, AuthError, Checked, Credentials, Principal, Role, Verifier,
};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One hash for every test: argon2 is slow on purpose.
fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_secret("s3cret"))
}

fn parse(text: &str) -> Result<Credentials, String> {
    Credentials::parse(text, &fixtures().join("auth.toml"), |var| {
        (var == "JWT_SECRET").then(|| "a-shared-secret-for-tests".to_owned())
    })
    .map_err(|e| e.to_string())
}

fn file(extra: &str) -> String {
    format!(
        r#"
[[credential]]
name = "ios-app"
role = "client"
secret_hash = "{h}"

[[credential]]
name = "ann-desktop"
role = "agent"
agent = "ann"
secret_hash = "{h}"
{extra}"#,
        h = hash()
    )
}

/// Each bad file is refused with a line naming the file, the entry and why.
#[test]
fn bad_files_name_the_entry_and_the_problem() {
    let h = hash();
    let check = |text: String, expected: &str| {
        let err = parse(&text).expect_err(&text);
        assert!(
            err.starts_with(&fixtures().join("auth.toml").display().to_string()),
            "{err}"
        );
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    };
    check(
        format!("[[credential]]\nname = \"a\"\nrole = \"agent\"\nsecret_hash = \"{h}\""),
        "credential[1] (a): agent is required for role agent",
    );
    check(
        format!(
            "[[credential]]\nname = \"b\"\nrole = \"client\"\nagent = \"x\"\nsecret_hash = \"{h}\""
        ),
        "credential[1] (b): agent is only for role agent, not client",
    );
    check(
        format!("[[credential]]\nname = \"c\"\nrole = \"root\"\nsecret_hash = \"{h}\""),
        "credential[1] (c): role: `root` is not a role",
    );
    check(
        "[[credential]]\nname = \"d\"\nrole = \"admin\"\nsecret_hash = \"hunter2\"".into(),
        "credential[1] (d): secret_hash is not a password hash",
    );
    check(
        file(&format!(
            "[[credential]]\nname = \"ios-app\"\nrole = \"admin\"\nsecret_hash = \"{h}\""
        )),
        "credential[3] (ios-app): the name is used by an earlier credential",
    );
    check(
        format!("[[credential]]\nname = \"e:f\"\nrole = \"admin\"\nsecret_hash = \"{h}\""),
        "credential[1] (e:f): name must be",
    );
    check(
        format!(
            "[[credential]]\nname = \"g\"\nrole = \"admin\"\nsecret = \"x\"\nsecret_hash = \"{h}\""
        ),
        "unknown field `secret`",
    );
    check(
        file("[jwt]\nissuer = \"i\"\naudience = \"a\"\nhs256_secret_env = \"NOT_SET\""),
        "[jwt]: hs256_secret_env: the environment variable NOT_SET is not set",
    );
    check(
        file("[jwt]\nissuer = \"i\"\naudience = \"a\"\nhs256_secret_env = \"JWT_SECRET\"\njwks_file = \"jwks.json\""),
        "[jwt]: give exactly one of",
    );
    check(
        file("[jwt]\nissuer = \"i\"\naudience = \"a\"\npublic_key_file = \"missing.pem\""),
        "[jwt]: public_key_file:",
    );
    check(
        file("[jwt]\nissuer = \"i\"\naudience = \"a\"\npublic_key_file = \"README.md\""),
        "is not an RSA or EC (P-256) public key in PEM",
    );
}

#[test]
fn a_good_file_loads_and_its_credentials_check() {
    let creds = parse(&file("")).unwrap();
    assert_eq!(creds.by_name.len(), 2);
    let verifier = Verifier::new(creds);
    assert!(!verifier.is_open());

    let check = |auth: Option<&str>, key: Option<&str>| -> Result<Checked, AuthError> {
        let presented = from_headers(auth, key).unwrap().unwrap();
        verifier.check(&presented)
    };
    let ann = Principal {
        name: "ann-desktop".into(),
        role: Role::Agent,
        agent: Some("ann".into()),
    };
    use base64::Engine as _;
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    assert_eq!(
        check(Some(&basic("ann-desktop:s3cret")), None),
        Ok(Checked::Principal(ann.clone()))
    );
    assert_eq!(
        check(None, Some("ann-desktop:s3cret")),
        Ok(Checked::Principal(ann.clone()))
    );
    assert_eq!(
        check(Some("Bearer ann-desktop:s3cret"), None),
        Ok(Checked::Principal(ann))
    );
    assert_eq!(
        check(None, Some("ann-desktop:wrong")),
        Err(AuthError::Refused)
    );
    assert_eq!(check(None, Some("nobody:s3cret")), Err(AuthError::Refused));
    assert_eq!(check(Some("Bearer a.b.c"), None), Err(AuthError::NoJwt));
}

/// The slow hash runs once per credential; later checks are remembered.
#[test]
fn a_verdict_is_remembered() {
    let verifier = Verifier::new(parse(&file("")).unwrap());
    let presented = from_headers(None, Some("ios-app:s3cret")).unwrap().unwrap();
    let first = Instant::now();
    verifier.check(&presented).unwrap();
    let first = first.elapsed();
    let again = Instant::now();
    for _ in 0..100 {
        verifier.check(&presented).unwrap();
    }
    // Not a timing assertion on the machine's speed: a hundred remembered
    // checks together still cost less than one argon2 verification.
    assert!(
        again.elapsed() < first,
        "{:?} vs {first:?}",
        again.elapsed()
    );
}

#[test]
fn minted_keys_check_against_their_stored_entry() {
    let verifier = Verifier::new(parse(&file("")).unwrap());
    let (text, stored) = mint("ann", "laptop");
    let presented = from_headers(None, Some(&text)).unwrap().unwrap();
    let Checked::NeedsStoredKey(key) = verifier.check(&presented).unwrap() else {
        panic!("a minted key needs its stored entry");
    };
    assert_eq!(key.id, stored.id);
    let who = verifier.check_minted(&key, Some(&stored)).unwrap();
    assert_eq!((who.role, who.agent.as_deref()), (Role::Agent, Some("ann")));
    assert_eq!(who.name, "ann/laptop");
    // Revoked: no entry.
    assert_eq!(verifier.check_minted(&key, None), Err(AuthError::Refused));
    let (_, other) = mint("bob", "laptop");
    assert_eq!(
        verifier.check_minted(&key, Some(&other)),
        Err(AuthError::Refused)
    );
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(role: &str, exp: u64, aud: &str) -> serde_json::Value {
    json!({"sub": "ann", "role": role, "iss": "https://idp.example", "aud": aud, "exp": exp})
}

fn with_jwt(setting: &str) -> Verifier {
    Verifier::new(
        parse(&file(&format!(
            "[jwt]\nissuer = \"https://idp.example\"\naudience = \"callbackd\"\n{setting}"
        )))
        .unwrap(),
    )
}

fn verdict(v: &Verifier, token: &str) -> Result<Principal, AuthError> {
    let presented = from_headers(Some(&format!("Bearer {token}")), None)
        .unwrap()
        .unwrap();
    match v.check(&presented)? {
        Checked::Principal(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

#[test]
fn jwts_with_each_algorithm() {
    let read = |f: &str| std::fs::read(fixtures().join(f)).unwrap();
    let cases: Vec<(Verifier, Header, EncodingKey)> = vec![
        (
            with_jwt("hs256_secret_env = \"JWT_SECRET\""),
            Header::new(jsonwebtoken::Algorithm::HS256),
            EncodingKey::from_secret(b"a-shared-secret-for-tests"),
        ),
        (
            with_jwt("public_key_file = \"rsa_public.pem\""),
            Header::new(jsonwebtoken::Algorithm::RS256),
            EncodingKey::from_rsa_pem(&read("rsa_private.pem")).unwrap(),
        ),
        (
            with_jwt("public_key_file = \"ec_public.pem\""),
            Header::new(jsonwebtoken::Algorithm::ES256),
            EncodingKey::from_ec_pem(&read("ec_private.pem")).unwrap(),
        ),
        (
            with_jwt("jwks_file = \"jwks.json\""),
            Header {
                kid: Some("idp-1".into()),
                ..Header::new(jsonwebtoken::Algorithm::RS256)
            },
            EncodingKey::from_rsa_pem(&read("rsa_private.pem")).unwrap(),
        ),
    ];
    for (verifier, header, key) in cases {
        let alg = header.alg;
        let sign = |c: serde_json::Value| encode(&header, &c, &key).unwrap();
        let ok = verdict(&verifier, &sign(claims("agent", now() + 300, "callbackd")));
        assert_eq!(
            ok,
            Ok(Principal {
                name: "ann".into(),
                role: Role::Agent,
                agent: Some("ann".into())
            }),
            "{alg:?}"
        );
        let sup = verdict(
            &verifier,
            &sign(claims("supervisor", now() + 300, "callbackd")),
        )
        .unwrap();
        assert_eq!((sup.role, sup.agent), (Role::Supervisor, None));
        let refused = |c, why: &str| {
            let err = verdict(&verifier, &sign(c)).unwrap_err();
            assert_eq!(err, AuthError::BadToken(why.into()), "{alg:?}");
        };
        refused(claims("agent", now() - 120, "callbackd"), "has expired");
        refused(
            claims("agent", now() + 300, "someone-else"),
            "is for another audience",
        );
        refused(
            claims("root", now() + 300, "callbackd"),
            "has a role claim that is not a role",
        );
        let mut other_issuer = claims("agent", now() + 300, "callbackd");
        other_issuer["iss"] = json!("https://evil.example");
        refused(other_issuer, "is from another issuer");
    }
}

/// A token cannot pick its own algorithm: an HS256 token signed with the
/// RSA public key (the classic confusion) is refused.
#[test]
fn a_token_cannot_choose_its_algorithm() {
    let verifier = with_jwt("public_key_file = \"rsa_public.pem\"");
    let public = std::fs::read(fixtures().join("rsa_public.pem")).unwrap();
    let token = encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("admin", now() + 300, "callbackd"),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(matches!(
        verdict(&verifier, &token),
        Err(AuthError::BadToken(_))
    ));
}

/// A caller on an async runtime can tell whether a check runs the slow hash.
#[test]
fn a_check_says_whether_it_is_quick() {
    let verifier = Verifier::new(parse(&file("")).unwrap());
    let presented = from_headers(None, Some("ios-app:s3cret")).unwrap().unwrap();
    assert!(!verifier.is_quick(&presented));
    assert_eq!(verifier.remembered(&presented), None);
    let who = verifier.check(&presented).unwrap();
    assert!(verifier.is_quick(&presented));
    assert_eq!(
        verifier.remembered(&presented),
        Some(Ok(match who {
            Checked::Principal(p) => p,
            other => panic!("{other:?}"),
        }))
    );
    let (key, _) = mint("ann", "k");
    assert!(verifier.is_quick(&from_headers(None, Some(&key)).unwrap().unwrap()));
}

/// An accepted token is remembered, so the next request with it skips the
/// signature and claims; a refused one is not, so strangers' tokens take
/// no room.
#[test]
fn an_accepted_jwt_is_remembered_and_a_refused_one_is_not() {
    let verifier = with_jwt("hs256_secret_env = \"JWT_SECRET\"");
    let key = EncodingKey::from_secret(b"a-shared-secret-for-tests");
    let header = Header::new(jsonwebtoken::Algorithm::HS256);
    let presented = |token: &str| {
        from_headers(Some(&format!("Bearer {token}")), None)
            .unwrap()
            .unwrap()
    };

    let good = encode(&header, &claims("agent", now() + 300, "callbackd"), &key).unwrap();
    assert_eq!(verifier.remembered(&presented(&good)), None);
    let who = verdict(&verifier, &good).unwrap();
    assert_eq!(
        verifier.remembered(&presented(&good)),
        Some(Ok(who.clone()))
    );
    assert_eq!(verdict(&verifier, &good), Ok(who));

    for bad in [
        encode(&header, &claims("agent", now() - 120, "callbackd"), &key).unwrap(),
        encode(&header, &claims("agent", now() + 300, "elsewhere"), &key).unwrap(),
        encode(
            &header,
            &claims("agent", now() + 300, "callbackd"),
            &EncodingKey::from_secret(b"not-the-secret"),
        )
        .unwrap(),
    ] {
        assert!(verdict(&verifier, &bad).is_err());
        assert_eq!(verifier.remembered(&presented(&bad)), None);
    }
}

/// A remembered token is refused once it expires, not up to five minutes
/// later: it is remembered only until its `exp` plus the leeway.
#[test]
fn a_remembered_jwt_is_refused_once_it_expires() {
    let verifier = with_jwt("hs256_secret_env = \"JWT_SECRET\"");
    let start = now();
    // Accepted through second `start + 1` (exp + leeway), refused after.
    let exp = start + 1 - access::jwt::LEEWAY_SECS;
    let token = encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("agent", exp, "callbackd"),
        &EncodingKey::from_secret(b"a-shared-secret-for-tests"),
    )
    .unwrap();
    let presented = from_headers(Some(&format!("Bearer {token}")), None)
        .unwrap()
        .unwrap();
    let who = verdict(&verifier, &token).expect("accepted for another second or two");
    if now() == start {
        assert_eq!(verifier.remembered(&presented), Some(Ok(who)));
    }
    while now() <= start + 1 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(verifier.remembered(&presented), None);
    assert_eq!(
        verdict(&verifier, &token),
        Err(AuthError::BadToken("has expired".into()))
    );
}
