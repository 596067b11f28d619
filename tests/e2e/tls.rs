//! TLS on the wire: a certificate authority and a coordinator certificate
//! made in the test; a TLS worker trains a sweep with the token; a client
//! that does not trust the CA, a plaintext client and a worker with the wrong
//! CA are each refused with a message that says what to fix.

use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::fixture::{Process, fixture_spec, groksweep, wait_for_sweep};

/// A CA's certificate (PEM) and the issuer that signs with it.
fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate")
}

/// Writes `ca.pem`, and `server.pem` / `server.key` for 127.0.0.1 and localhost signed by it.
fn write_certificates(directory: &Path, ca: &CertifiedIssuer<'static, KeyPair>) {
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("server params");
    let key = KeyPair::generate().expect("server key");
    let certificate = params.signed_by(&key, ca).expect("server certificate");
    std::fs::write(directory.join("ca.pem"), ca.pem()).expect("write ca.pem");
    std::fs::write(directory.join("server.pem"), certificate.pem()).expect("write server.pem");
    std::fs::write(directory.join("server.key"), key.serialize_pem()).expect("write server.key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_worker_trains_with_the_token_and_untrusting_or_plaintext_clients_are_told_why() {
    let directory = tempfile::tempdir().expect("tempdir");
    let dir = directory.path();
    let ca = certificate_authority("groksweep test CA");
    write_certificates(dir, &ca);
    let other_ca = certificate_authority("some other CA");
    std::fs::write(dir.join("other-ca.pem"), other_ca.pem()).expect("write other-ca.pem");
    let path = |name: &str| dir.join(name).to_str().expect("utf-8 temp path").to_string();
    let (cert, key, ca_pem, other_pem) = (path("server.pem"), path("server.key"), path("ca.pem"), path("other-ca.pem"));

    // A key that is not a key stops the coordinator before it listens, saying so.
    let data_dir = dir.join("refused").to_str().expect("utf-8").to_string();
    let refused = groksweep(&["coordinator", "--listen", "127.0.0.1:0", "--data-dir", &data_dir, "--tls-cert", &cert, "--tls-key", &cert]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).is_empty(), "it must not say it listens");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid TLS certificate"), "{}", String::from_utf8_lossy(&refused.stderr));

    let data = dir.join("data");
    let (_coordinator, address) =
        Process::coordinator(&data, "127.0.0.1:0", &["--tls-cert", &cert, "--tls-key", &key, "--token", "s3cret"]);
    assert!(address.starts_with("https://127.0.0.1:"), "{address}");

    // A worker with the CA and the token trains the sweep over TLS.
    let _worker = Process::worker(&address, &["--tls-ca", &ca_pem, "--token", "s3cret"]);
    let ca_bytes = std::fs::read(&ca_pem).expect("read ca.pem");
    let mut client = sweep_proto::client::connect_lazy(
        &address,
        sweep_proto::client::ConnectOptions { token: Some("s3cret"), tls_ca_pem: Some(&ca_bytes) },
    )
    .expect("TLS client");
    let spec = fixture_spec("tiny.yaml");
    let submitted = crate::fixture::submit(&mut client, &spec).await;
    assert_eq!(submitted.trials_total, 4);
    let done = wait_for_sweep(&mut client, "tiny", Duration::from_secs(180), |status| status.finished).await;
    assert!(done.trials.iter().all(|trial| trial.status == "done"), "{done:#?}");

    // The CLI over TLS, with the CA: it works, and the token is still checked.
    let status = groksweep(&["status", "--coordinator", &address, "--tls-ca", &ca_pem, "--token", "s3cret"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(String::from_utf8_lossy(&status.stdout).contains("tiny"));
    let no_token = groksweep(&["status", "--coordinator", &address, "--tls-ca", &ca_pem]);
    assert!(!no_token.status.success());
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("token"), "{}", String::from_utf8_lossy(&no_token.stderr));

    // A client that trusts another CA is refused, and told to pass the right one.
    let untrusting = groksweep(&["status", "--coordinator", &address, "--tls-ca", &other_pem, "--token", "s3cret"]);
    assert!(!untrusting.status.success());
    let stderr = String::from_utf8_lossy(&untrusting.stderr);
    assert!(stderr.contains("invalid peer certificate") && stderr.contains("--tls-ca"), "{stderr}");

    // A plaintext client to the TLS port gets an answer, not a hang, that points at https://.
    let plaintext_address = address.replacen("https://", "http://", 1);
    let started = std::time::Instant::now();
    let plaintext = groksweep(&["status", "--coordinator", &plaintext_address, "--token", "s3cret"]);
    assert!(started.elapsed() < Duration::from_secs(20), "a plaintext client took {:?}", started.elapsed());
    assert!(!plaintext.status.success());
    let stderr = String::from_utf8_lossy(&plaintext.stderr);
    assert!(stderr.contains("https://"), "{stderr}");

    // A CA for a plaintext address is a mistake the client names before connecting.
    let mixed = groksweep(&["status", "--coordinator", &plaintext_address, "--tls-ca", &ca_pem]);
    assert!(String::from_utf8_lossy(&mixed.stderr).contains("use https://"), "{}", String::from_utf8_lossy(&mixed.stderr));

    // A worker that cannot verify the certificate stops at once with the reason.
    let mut wrong_worker = Process::worker(&address, &["--tls-ca", &other_pem, "--token", "s3cret"]);
    let (exit, stderr) = wrong_worker.wait_exit(Duration::from_secs(30));
    assert!(!exit.success());
    assert!(stderr.contains("cannot verify the coordinator's certificate") && stderr.contains("--tls-ca"), "{stderr}");
}
