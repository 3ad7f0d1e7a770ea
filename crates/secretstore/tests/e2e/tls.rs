//! TLS on both listeners through the real binary: a self-signed certificate trusted by our own
//! client (and by nothing else), the admin API over TLS from the command line, and a renewed
//! certificate served after SIGHUP without a restart, while a connection opened before it
//! keeps working.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use secretstore_client::{Client, FindSecret, Scope, SetSecret};
use secretstore_testkit::binary::Site;

use crate::server::BIN;

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed for the TLS tests");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A private certificate authority: (cert, key).
fn authority(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}-ca.pem"));
    let key = dir.join(format!("{name}-ca.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} CA"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    (cert, key)
}

/// A certificate for 127.0.0.1 and localhost signed by `ca`: (cert, key).
fn issued(dir: &Path, ca: &(PathBuf, PathBuf), name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca.0.to_str().unwrap(),
        "-CAkey",
        ca.1.to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    (cert, key)
}

/// The SHA-256 fingerprint of the certificate a TLS server at `addr` presents.
fn served_fingerprint(addr: &str) -> String {
    let shown = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -servername localhost </dev/null 2>/dev/null \
             | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&shown.stdout).trim().to_owned()
}

fn fingerprint(cert: &Path) -> String {
    let shown = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    String::from_utf8_lossy(&shown.stdout).trim().to_owned()
}

fn client(url: &str, key: &str, ca: Option<&Path>) -> Client {
    let mut builder = Client::builder(key).base_url(url).max_retries(0);
    if let Some(ca) = ca {
        builder = builder.root_certificate_pem(std::fs::read(ca).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn both_listeners_serve_tls_and_our_client_trusts_only_what_it_is_told() {
    let mut site = Site::production(BIN);
    let ca = authority(site.dir.path(), "public");
    let admin_ca = authority(site.dir.path(), "admin");
    let (cert, key) = issued(site.dir.path(), &ca, "public");
    let (admin_cert, admin_key) = issued(site.dir.path(), &admin_ca, "admin");
    let args = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--admin-tls-cert",
        admin_cert.to_str().unwrap(),
        "--admin-tls-key",
        admin_key.to_str().unwrap(),
    ];
    let server = site.start(&args);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let admin_url = server.admin_url.clone().unwrap();
    assert!(admin_url.starts_with("https://"), "{admin_url}");

    // Provision with the command line over TLS (the admin CA given as --ca-cert).
    let admin = |args: &[&str]| {
        let output = Command::new(BIN)
            .arg("admin")
            .args(args)
            .arg("--ca-cert")
            .arg(&admin_ca.0)
            .env("SECRETSTORE_ADMIN_URL", &admin_url)
            .env(
                "SECRETSTORE_ADMIN_TOKEN",
                site.admin_token.as_ref().unwrap(),
            )
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    admin(&["accounts", "create", "--id", "acct_tls"]);
    admin(&[
        "apps",
        "create",
        "--id",
        "app.tls",
        "--name",
        "TLS",
        "--account",
        "acct_tls",
    ]);
    let secret = admin(&[
        "keys", "create", "--app", "app.tls", "--mode", "test", "--type", "secret",
    ]);

    let trusting = client(&server.url, &secret, Some(&ca.0));
    trusting
        .set(SetSecret::new(Scope::Account, "over-tls", "p"))
        .await
        .unwrap();
    let found = trusting
        .find(FindSecret::new(Scope::Account, "over-tls").expand_payload())
        .await
        .unwrap();
    assert_eq!(found.payload.unwrap().expose(), "p");
    // Without the CA, or with the admin listener's certificate, the handshake is refused.
    let untrusting = client(&server.url, &secret, None);
    assert!(untrusting
        .find(FindSecret::new(Scope::Account, "over-tls"))
        .await
        .is_err());
    let wrong_ca = client(&server.url, &secret, Some(&admin_ca.0));
    assert!(wrong_ca
        .find(FindSecret::new(Scope::Account, "over-tls"))
        .await
        .is_err());
    // Plain HTTP on a TLS listener gets nothing it could mistake for an answer.
    let plain = reqwest::Client::new()
        .get(server.url.replace("https://", "http://") + "/healthz")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[tokio::test]
async fn a_renewed_certificate_is_served_after_sighup_without_dropping_connections() {
    let mut site = Site::new(BIN);
    let ca = authority(site.dir.path(), "renew");
    let (cert, key) = issued(site.dir.path(), &ca, "first");
    let (next_cert, next_key) = issued(site.dir.path(), &ca, "second");
    let served = site.dir.path().join("served.pem");
    let served_key = site.dir.path().join("served.key");
    std::fs::copy(&cert, &served).unwrap();
    std::fs::copy(&key, &served_key).unwrap();
    let server = site.start(&[
        "--tls-cert",
        served.to_str().unwrap(),
        "--tls-key",
        served_key.to_str().unwrap(),
    ]);
    let addr = server.url.trim_start_matches("https://").to_owned();
    assert_eq!(served_fingerprint(&addr), fingerprint(&cert));

    // A connection opened now, kept alive across the reload.
    let early = client(&server.url, "sk_test_renew", Some(&ca.0));
    early
        .set(SetSecret::new(Scope::Account, "before", "p"))
        .await
        .unwrap();

    // Renew: new files in place, then SIGHUP.
    std::fs::copy(&next_cert, &served).unwrap();
    std::fs::copy(&next_key, &served_key).unwrap();
    let pid = server.pid().unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut renewed = false;
    for _ in 0..50 {
        if served_fingerprint(&addr) == fingerprint(&next_cert) {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        renewed,
        "the renewed certificate is not served:\n{}",
        server.log_text()
    );
    // The connection from before the reload still answers (it was not dropped).
    early
        .find(FindSecret::new(Scope::Account, "before"))
        .await
        .unwrap();
    // New clients get the new certificate.
    let late = client(&server.url, "sk_test_renew", Some(&ca.0));
    late.find(FindSecret::new(Scope::Account, "before"))
        .await
        .unwrap();
    assert!(server.log_text().contains("TLS certificate reloaded"));

    // A broken renewal keeps the certificate that works.
    std::fs::write(&served, "not a certificate").unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_fingerprint(&addr), fingerprint(&next_cert));
    assert!(server
        .log_text()
        .contains("the previous one is still served"));
}
