//! The README's Rust example, compiled and run: `tests/readme` runs this against the README's
//! dev server on 127.0.0.1:12111 and checks that the two marked regions below, put together,
//! are word for word the README's ```rust block, so the README cannot show code that does not
//! build or work.
//!
//! `cargo run -p secretstore-client --example readme` (with `secretstore serve --dev` running).

// README: begin
use secretstore_client::{Client, FindSecret, Scope, SetSecret};
// README: end

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // README: begin
    let client = Client::builder("sk_test_myapp")
        .base_url("http://127.0.0.1:12111")
        .build()?;
    client
        .set(SetSecret::new(
            Scope::user("usr_123"),
            "github-token",
            "ghp_...",
        ))
        .await?;
    let secret = client
        .find(FindSecret::new(Scope::user("usr_123"), "github-token").expand_payload())
        .await?;
    // README: end
    let payload = secret.payload.as_ref().map(|p| p.expose());
    if payload != Some("ghp_...") {
        return Err("find did not answer the payload just set".into());
    }
    println!("found {} with its payload", secret.name);
    Ok(())
}
