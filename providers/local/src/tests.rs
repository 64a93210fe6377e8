use std::os::unix::fs::PermissionsExt;

use super::*;

fn tags(student: &str) -> Tags {
    Tags { cohort: Some("mon".into()), student: Some(student.into()), ..Tags::lab("lab1", None) }
}

fn spec(kind: &str, config: Value, student: &str) -> ResourceSpec {
    ResourceSpec {
        address: format!("{kind}/{student}"),
        kind: kind.into(),
        config: attrs(config),
        tags: tags(student),
    }
}

fn dataset_spec(bucket: &str) -> ResourceSpec {
    spec(
        "dataset",
        json!({"bucket": bucket, "name": "corpus", "dataset": {"kind": "text", "size_bytes": 5000, "files": 2, "seed": 7}}),
        "ada",
    )
}

#[tokio::test]
async fn bucket_lifecycle_is_idempotent_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(dir.path(), "lab1", dir.path());
    let s = spec("bucket", json!({"name": "lab1-ada"}), "ada");
    let made = p.create(&s, &Deps::new()).await.unwrap();
    assert!(p.bucket_path("lab1-ada").is_dir());
    // A second create adopts the same bucket.
    assert_eq!(p.create(&s, &Deps::new()).await.unwrap(), made);
    assert_eq!(p.read("bucket", &made).await.unwrap(), Some(made.clone()));
    let found = p.sweep("lab1").await.unwrap();
    assert_eq!(found, vec![Found { kind: "bucket".into(), id: "lab1-ada".into(), tags: tags("ada") }]);
    assert!(p.sweep("other").await.unwrap().is_empty());

    p.delete("bucket", &made).await.unwrap();
    p.delete("bucket", &made).await.unwrap();
    assert_eq!(p.read("bucket", &made).await.unwrap(), None);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the lab directory is gone");
}

#[tokio::test]
async fn a_bucket_path_taken_by_someone_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(dir.path(), "lab1", dir.path());
    std::fs::create_dir_all(p.bucket_path("lab1-ada")).unwrap();
    let err = p.create(&spec("bucket", json!({"name": "lab1-ada"}), "ada"), &Deps::new()).await.unwrap_err();
    assert_eq!(err.kind, labctl_provider_api::ErrorKind::Invalid);
    assert!(err.message.contains("was not made by labctl"), "{}", err.message);
}

#[tokio::test]
async fn credential_is_private_and_sensitive() {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(dir.path(), "lab1", dir.path());
    let made = p.create(&spec("credential", json!({"student": "ada"}), "ada"), &Deps::new()).await.unwrap();
    assert_eq!(made.sensitive, vec!["token".to_owned()]);
    let token = made.attributes["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    let mode = std::fs::metadata(p.token_path("ada")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Adopting keeps the same token.
    let again = p.create(&spec("credential", json!({"student": "ada"}), "ada"), &Deps::new()).await.unwrap();
    assert_eq!(again, made);
}

#[tokio::test]
async fn dataset_is_seeded_completely_and_deleting_it_keeps_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(dir.path(), "lab1", dir.path());
    p.create(&spec("bucket", json!({"name": "b"}), "ada"), &Deps::new()).await.unwrap();
    let made = p.create(&dataset_spec("b"), &Deps::new()).await.unwrap();
    let data = p.dataset_dir("b", "corpus");
    let mut names: Vec<String> =
        std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["_LABCTL_MANIFEST.json", "part-00000.txt", "part-00001.txt"]);
    assert_eq!(p.read("dataset", &made).await.unwrap(), Some(made.clone()));

    // A missing manifest means the seeding never finished: the dataset does not exist.
    std::fs::remove_file(data.join(MANIFEST)).unwrap();
    assert_eq!(p.read("dataset", &made).await.unwrap(), None);

    p.delete("dataset", &made).await.unwrap();
    assert!(!data.exists());
    assert!(p.bucket_path("b").is_dir());
}

#[tokio::test]
async fn seeding_into_a_missing_bucket_fails_without_retry() {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(dir.path(), "lab1", dir.path());
    let err = p.create(&dataset_spec("nope"), &Deps::new()).await.unwrap_err();
    assert!(!err.kind.is_retryable());
}
