//! M11: streaming mode with Python mapper and reducer scripts.

use std::time::Duration;

use crate::support::*;

const MAPPER: &str = r#"import re, sys
for line in sys.stdin:
    for word in re.findall(r"[A-Za-z]+", line):
        print(f"{word.lower()}\t1")
"#;

const REDUCER: &str = r#"import sys
current, total = None, 0
for line in sys.stdin:
    word, count = line.rstrip("\n").split("\t")
    if word != current:
        if current is not None:
            print(f"{current}\t{total}")
        current, total = word, 0
    total += int(count)
if current is not None:
    print(f"{current}\t{total}")
"#;

#[test]
fn m11_python_word_count_from_shipped_files_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    corpus(&input, 3, 60, 9);
    std::fs::write(dir.path().join("mapper.py"), MAPPER).unwrap();
    std::fs::write(dir.path().join("reducer.py"), REDUCER).unwrap();
    // Shipped with the job: the workers run them from a directory of the task's own.
    let (mapper, reducer) = (dir.path().join("mapper.py"), dir.path().join("reducer.py"));
    let input_s = input.display().to_string();
    let args = [
        "streaming",
        "--input",
        &input_s,
        "--output",
        out.to_str().unwrap(),
        "--reduces",
        "3",
        "--mapper",
        "python3 mapper.py",
        "--reducer",
        "python3 reducer.py",
        "--file",
        mapper.to_str().unwrap(),
        "--file",
        reducer.to_str().unwrap(),
    ];
    let (ok, log) = Cluster::start(&args, &dir.path().join("r.json"), 2, &[]).wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert_eq!(output(&out), reference(&["wordcount", "--input", &input_s], dir.path()));
}

#[test]
fn m11_a_failing_mapper_is_retried_then_fails_the_job_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    corpus(&input, 1, 5, 10);
    let input_s = input.display().to_string();
    let args = [
        "streaming",
        "--input",
        &input_s,
        "--output",
        out.to_str().unwrap(),
        "--mapper",
        "python3 -c 'import sys; sys.stderr.write(\"Traceback: boom in mapper\\n\"); sys.exit(3)'",
        "--reducer",
        "cat",
        "--max-attempts",
        "3",
    ];
    let (ok, log) = Cluster::start(&args, &dir.path().join("r.json"), 2, &[]).wait(Duration::from_secs(60));
    assert!(!ok, "the job must fail");
    let r = report(&dir.path().join("r.json"));
    assert_eq!(r["succeeded"], false);
    assert_eq!(r["counters"]["failed_executions"].as_u64(), Some(3), "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("map task 0 failed 3 times")
            && error.contains("boom in mapper")
            && error.contains("exit status: 3"),
        "{error}\n{log}"
    );
    assert!(!out.join("_SUCCESS").exists());
}
