//! The user-visible flows, over real HTTP.

use base64::Engine;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use shopstream_proto::identity::v1::{
    GetUserRequest, ValidateTokenRequest, identity_service_client::IdentityServiceClient,
};

use super::start;
use shopstream_runtime::testkit;

const PASSWORD: &str = "correct horse battery staple";

async fn signup(c: &Client, base: &str, email: &str) -> reqwest::Response {
    c.post(format!("{base}/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

async fn login(c: &Client, base: &str, email: &str, password: &str) -> reqwest::Response {
    c.post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn me(c: &Client, base: &str, token: &str) -> reqwest::Response {
    c.get(format!("{base}/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn signup_login_me_with_bearer_and_cookies() {
    let s = start(20).await;
    let c = Client::new();
    let r = signup(&c, &s.http, "Ada.Lovelace@Example.com").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["email"], "ada.lovelace@example.com");

    let r = login(&c, &s.http, "ada.lovelace@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("ss_access=")
            && c.contains("HttpOnly")
            && c.contains("SameSite=Lax")),
        "{cookies:?}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("ss_refresh=")
            && c.contains("Path=/auth")
            && c.contains("SameSite=Strict")),
        "{cookies:?}"
    );
    let session: Value = r.json().await.unwrap();
    assert!(session["expires_in"].as_i64().unwrap() <= 900);
    let access = session["access_token"].as_str().unwrap();

    let r = me(&c, &s.http, access).await;
    assert_eq!(r.status(), StatusCode::OK);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["id"], user["id"]);
    assert_eq!(m["admin"], false);

    // The cookie works as well as the header (browser clients).
    let r = c
        .get(format!("{}/me", s.http))
        .header("cookie", format!("ss_access={access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // gRPC: ValidateToken and GetUser agree with REST.
    let mut g = IdentityServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let v = g
        .validate_token(ValidateTokenRequest {
            access_token: access.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.user_id, user["id"].as_str().unwrap());
    let u = g
        .get_user(GetUserRequest {
            user_id: v.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.user.unwrap().email, "ada.lovelace@example.com");
    let err = g
        .validate_token(ValidateTokenRequest {
            access_token: "garbage".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_and_reusing_an_old_token_revokes_the_family() {
    let s = start(20).await;
    let c = Client::new();
    signup(&c, &s.http, "grace@example.com").await;
    let first: Value = login(&c, &s.http, "grace@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let old = first["refresh_token"].as_str().unwrap().to_string();

    let r = c
        .post(format!("{}/auth/refresh", s.http))
        .json(&json!({"refresh_token": old}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let second: Value = r.json().await.unwrap();
    let newer = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(old, newer);

    // Someone replays the old token: refused, and the family dies...
    let r = c
        .post(format!("{}/auth/refresh", s.http))
        .json(&json!({"refresh_token": old}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("reused"), "{p}");
    // ...so the legitimate newest token fails too.
    let r = c
        .post(format!("{}/auth/refresh", s.http))
        .json(&json!({"refresh_token": newer}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Logout ends a fresh session; its refresh token no longer works.
    let third: Value = login(&c, &s.http, "grace@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let t = third["refresh_token"].as_str().unwrap();
    let r = c
        .post(format!("{}/auth/logout", s.http))
        .json(&json!({"refresh_token": t}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .post(format!("{}/auth/refresh", s.http))
        .json(&json!({"refresh_token": t}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_tokens_are_refused() {
    let s = start(20).await;
    let c = Client::new();
    signup(&c, &s.http, "mallory@example.com").await;
    let session: Value = login(&c, &s.http, "mallory@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    // alg: none with the real payload and no signature.
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert_eq!(
        me(&c, &s.http, &none).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Payload edited to claim admin; signature kept.
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["admin"] = json!(true);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(
        me(&c, &s.http, &tampered).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // HS256 signed with the public key from the JWKS (key confusion).
    let jwks = testkit::get_json(&c, &format!("{}/.well-known/jwks.json", s.http)).await;
    let public = b64.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(
        me(&c, &s.http, &hs).await.status(),
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(
        me(&c, &s.http, "not.a.jwt").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = c.get(format!("{}/me", s.http)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_duplicates_bad_credentials_and_rate_limit() {
    let s = start(3).await;
    let c = Client::new();
    let r = c
        .post(format!("{}/auth/signup", s.http))
        .json(&json!({"email": "not-an-email", "password": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["email", "password"], "{p}");

    assert_eq!(
        signup(&c, &s.http, "linus@example.com").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        signup(&c, &s.http, "LINUS@example.com").await.status(),
        StatusCode::CONFLICT
    );

    // Malformed JSON is 400, not 422.
    let r = c
        .post(format!("{}/auth/login", s.http))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Limit 3 per email+IP per minute: 3 attempts answer, the 4th is 429.
    for _ in 0..3 {
        let r = login(&c, &s.http, "linus@example.com", "wrong password here").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login(&c, &s.http, "linus@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_admin_over_grpc_creates_once_then_promotes() {
    use shopstream_runtime::admin::{AdminError, ensure_admin};
    let s = start(20).await;
    let c = Client::new();

    // A new account: the password comes back once and signs in as an admin.
    let password = ensure_admin(&s.grpc, None, "root@example.com")
        .await
        .unwrap()
        .expect("created");
    assert!(is_admin(&c, &s.http, "root@example.com", &password).await);
    assert!(
        ensure_admin(&s.grpc, None, "root@example.com")
            .await
            .unwrap()
            .is_none(),
        "a second call creates nothing"
    );

    // An existing customer is promoted; their password is unchanged.
    signup(&c, &s.http, "grace@example.com").await;
    assert!(
        ensure_admin(&s.grpc, Some("default"), "grace@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(is_admin(&c, &s.http, "grace@example.com", PASSWORD).await);

    // Tenants are apart: the same email in another tenant is another account.
    assert!(
        ensure_admin(&s.grpc, Some("acme"), "grace@example.com")
            .await
            .unwrap()
            .is_some()
    );

    let e = ensure_admin(&s.grpc, None, "not-an-email")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            AdminError::Refused {
                code: tonic::Code::InvalidArgument,
                ..
            }
        ),
        "{e}"
    );
}

/// Log in and read the `admin` flag of `/me`.
async fn is_admin(c: &Client, http: &str, email: &str, password: &str) -> bool {
    let r = login(c, http, email, password).await;
    assert_eq!(r.status(), StatusCode::OK);
    let access = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    me(c, http, &access).await.json::<Value>().await.unwrap()["admin"] == true
}
