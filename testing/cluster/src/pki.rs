//! The cluster's PKI, made with the `openssl` command: one CA, the API server's serving
//! certificate, a client certificate per component (its name and groups are what RBAC and
//! the Node authorizer see), and the service-account signing key pair.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use labctl_test_host::netns::run;

/// Where the PKI's files are.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

/// A client certificate and its key.
#[derive(Debug, Clone)]
pub struct Client {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// Makes a CA, the service-account key pair and the API server's certificate, valid for
    /// `server_ips` and the names the `kubernetes` Service has.
    pub fn create(dir: &Path, server_ips: &[&str]) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let pki = Self { dir: dir.to_owned() };
        openssl(&pki.dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"])?;
        openssl(
            &pki.dir,
            &["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=labctl-test-cluster-ca", "-days", "30"]
                .into_iter()
                .chain(["-out", "ca.crt"])
                .collect::<Vec<_>>(),
        )?;
        openssl(&pki.dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key"])?;
        openssl(&pki.dir, &["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        let mut names: Vec<String> = server_ips.iter().map(|ip| format!("IP:{ip}")).collect();
        names.extend(
            [
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ]
            .iter()
            .map(|n| format!("DNS:{n}")),
        );
        pki.sign("apiserver", "/CN=kube-apiserver", Some(&names.join(",")), "serverAuth")?;
        Ok(pki)
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    pub fn service_account_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }

    pub fn service_account_public_key(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }

    /// The API server's serving certificate.
    pub fn server(&self) -> Client {
        self.pair("apiserver")
    }

    /// A client certificate for user `user` in `groups`, saved as `file`.crt/.key.
    pub fn client(&self, file: &str, user: &str, groups: &[&str]) -> io::Result<Client> {
        let mut subject = String::new();
        for group in groups {
            subject.push_str(&format!("/O={group}"));
        }
        subject.push_str(&format!("/CN={user}"));
        self.sign(file, &subject, None, "clientAuth")?;
        Ok(self.pair(file))
    }

    fn pair(&self, file: &str) -> Client {
        Client { cert: self.dir.join(format!("{file}.crt")), key: self.dir.join(format!("{file}.key")) }
    }

    fn sign(&self, file: &str, subject: &str, names: Option<&str>, usage: &str) -> io::Result<()> {
        let (key, csr, cert, ext) =
            (format!("{file}.key"), format!("{file}.csr"), format!("{file}.crt"), format!("{file}.ext"));
        let mut extensions = format!("keyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n");
        if let Some(names) = names {
            extensions.push_str(&format!("subjectAltName={names}\n"));
        }
        fs::write(self.dir.join(&ext), extensions)?;
        openssl(&self.dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key])?;
        openssl(&self.dir, &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr])?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        )?;
        fs::remove_file(self.dir.join(csr))?;
        fs::remove_file(self.dir.join(ext))
    }
}

fn openssl(dir: &Path, args: &[&str]) -> io::Result<()> {
    run(Command::new("openssl").current_dir(dir).args(args))
}
