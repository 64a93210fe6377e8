//! E1: every invalid lab file gets file:line:column, the offending value and what is
//! allowed; exit code 2; nothing is created and no state is written.

use crate::support::{lab, stable, Env};

/// Writes `text` as lab.toml, validates it (and plans it: that must refuse too, touching
/// nothing), and returns the diagnostics.
fn invalid(env: &Env, text: &str) -> String {
    env.write("lab.toml", text);
    let run = env.run(&["validate", "lab.toml"]);
    assert_eq!(run.code, 2, "validate must exit 2 on invalid input:\n{}", run.all());
    let applied = env.run(&["apply", "lab.toml", "--yes"]);
    assert_eq!(applied.code, 2, "{}", applied.all());
    assert!(!env.path(".labctl").exists(), "no state is written");
    assert!(!env.data().exists(), "nothing is created");
    run.stderr
}

fn good() -> String {
    lab("lab1", &["ada", "bob"], 1)
}

#[test]
fn misspelt_key_gets_a_suggestion() {
    let env = Env::new();
    let _s = stable(&env);
    insta::assert_snapshot!(invalid(&env, &good().replace("bucket = {", "bukcet = {")));
}

#[test]
fn unknown_provider_value_lists_what_is_allowed() {
    let env = Env::new();
    let _s = stable(&env);
    insta::assert_snapshot!(invalid(&env, &good().replace("[provider.local]", "[provider.lcoal]")));
}

#[test]
fn student_ids_must_be_dns_labels_and_unique() {
    let env = Env::new();
    let _s = stable(&env);
    let text = good().replace(
        r#"students = [{ id = "ada" }, { id = "bob" }]"#,
        "students = [\n  { id = \"ada\" },\n  { id = \"Bob_S\" },\n  { id = \"ada\" },\n]",
    );
    insta::assert_snapshot!(invalid(&env, &text));
}

#[test]
fn roster_errors_name_the_csv_row() {
    let env = Env::new();
    let _s = stable(&env);
    env.write("roster.csv", "id,name,email\nada,Ada,ada@example.edu\nbob,Bob,not-an-email\n9lives,Cat,cat@example.edu\nada,Again,a@example.edu\n");
    let text = good().replace(r#"students = [{ id = "ada" }, { id = "bob" }]"#, r#"roster = "roster.csv""#);
    insta::assert_snapshot!(invalid(&env, &text));
}

#[test]
fn roster_needs_its_header() {
    let env = Env::new();
    let _s = stable(&env);
    env.write("roster.csv", "ada,Ada,ada@example.edu\n");
    let text = good().replace(r#"students = [{ id = "ada" }, { id = "bob" }]"#, r#"roster = "roster.csv""#);
    insta::assert_snapshot!(invalid(&env, &text));
}

#[test]
fn empty_cohort_gpu_on_local_zero_workers_and_unknown_dataset_are_all_reported() {
    let env = Env::new();
    let _s = stable(&env);
    let text = good()
        .replace(r#"students = [{ id = "ada" }, { id = "bob" }]"#, "students = []")
        .replace(
            "[student]\n",
            "[student]\nworkers = { mapreduce = { workers = 0 } }\nsmoke = [\"wordcount\"]\n",
        )
        .replace(r#"datasets = ["corpus", "table"]"#, r#"datasets = ["corpus", "tabel"]"#)
        .replace("[student]\n", "[student]\ngpu = { count = 1 }\n");
    insta::assert_snapshot!(invalid(&env, &text));
}

#[test]
fn provider_block_needs_exactly_one_provider() {
    let env = Env::new();
    let _s = stable(&env);
    let text = good().replace("[provider.local]", "[provider.local]\n[provider.aws]\nregion = \"eu-west-1\"");
    insta::assert_snapshot!(invalid(&env, &text));
}

#[test]
fn toml_syntax_errors_point_at_the_spot() {
    let env = Env::new();
    let _s = stable(&env);
    insta::assert_snapshot!(invalid(&env, &good().replace("name = \"lab1\"", "name = \"lab1")));
}

#[test]
fn gpu_needs_a_gpu_node_pool_on_cloud_providers() {
    let env = Env::new();
    let _s = stable(&env);
    let text = good()
        .replace("[provider.local]", "[provider.aws]\nregion = \"eu-west-1\"")
        .replace("[student]\n", "[student]\ngpu = { count = 1 }\n")
        + "\n[cluster.shared.node_pool.cpu]\ninstance_type = \"m5.large\"\nmax = 3\n";
    insta::assert_snapshot!(invalid(&env, &text));
}

/// The kubernetes example with its GPU pool gone, a quantity misspelt and no image: the
/// research cohort's GPUs, the quantity and the missing image are all pointed at.
#[test]
fn kubernetes_gpus_need_a_gpu_pool_and_quantities_are_checked() {
    let env = Env::new();
    let _s = stable(&env);
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kubernetes.toml")).unwrap();
    let without_gpu_pool = example.split("[cluster.course.node_pool.gpu]").next().unwrap().to_owned();
    let text = without_gpu_pool
        .replace("memory = \"512Mi\"", "memory = \"512MB\"")
        .replace("image = \"ghcr.io/labctl/workers:0.1.0\"\n", "")
        .replace("storage = { size = \"1Gi\" }", "storage = { size = \"1 GB\" }");
    insta::assert_snapshot!(invalid(&env, &text));
}

/// Workers that cannot fit the namespace are refused before anything is made: a container
/// above the limit range's maximum, more CPU than the quota, more GPUs than a node has.
#[test]
fn kubernetes_workers_must_fit_their_namespace() {
    let env = Env::new();
    let _s = stable(&env);
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kubernetes.toml")).unwrap();
    let text = example
        .replace("quota = { cpu = \"4\"", "quota = { cpu = \"2\"")
        .replace("max_memory = \"4Gi\"", "max_memory = \"384Mi\"")
        .replace("gpu = { count = 1 }", "gpu = { count = 2 }");
    insta::assert_snapshot!(invalid(&env, &text));
}

#[test]
fn json_diagnostics_for_tools() {
    let env = Env::new();
    env.write("lab.toml", &good().replace("bucket = {", "bukcet = {"));
    let run = env.run(&["validate", "lab.toml", "--json"]);
    assert_eq!(run.code, 2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (d["file"].as_str(), d["line"].as_u64(), d["column"].as_u64()),
        (Some("lab.toml"), Some(11), Some(1))
    );
}

#[test]
fn a_valid_lab_says_what_it_holds() {
    let env = Env::new();
    env.write("lab.toml", &good());
    let run = env.run(&["validate", "lab.toml"]).ok();
    assert_eq!(
        run.stdout,
        "lab.toml is valid: lab `lab1`, local provider, 1 cohort(s), 2 student(s), 10 resources.\n"
    );
}

#[test]
fn every_lab_in_labs_and_examples_is_valid() {
    let env = Env::new();
    let mut checked = 0;
    for dir in ["examples", "labs"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                env.run(&["validate", path.to_str().unwrap()]).ok();
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "the quickstart and one lab per course module");
}

#[test]
fn schema_describes_the_lab_file() {
    let env = Env::new();
    let run = env.run(&["schema"]).ok();
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let props = &schema["properties"];
    for key in ["lab", "provider", "cohort", "student", "datasets", "cluster", "network"] {
        assert!(props.get(key).is_some(), "schema lacks `{key}`");
    }
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn ssh_keys_and_ranges_that_are_not_ones_are_pointed_at() {
    let env = Env::new();
    let _s = stable(&env);
    let text = good().replace("[provider.local]", "[provider.aws]\nregion = \"eu-west-1\"")
        + "\n[student.compute]\nssh_keys = [\"ssh-ed25519 AAAAC3Nza ok@host\", \"my password\"]\n"
        + "ssh_cidrs = [\"203.0.113.0/24\", \"10.1.2.3/8\"]\n";
    insta::assert_snapshot!(invalid(&env, &text));
}

/// Diagnostics about a whole table point where the parser saw it, not at the first place
/// its name is written (here, comments that mention the tables before them).
#[test]
fn table_diagnostics_point_at_the_table_not_at_a_comment() {
    let env = Env::new();
    let _s = stable(&env);
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kubernetes.toml")).unwrap();
    let text = format!(
        "# The image goes under [provider.kubernetes]; workers below.\n{}",
        example.replace("image = \"ghcr.io/labctl/workers:0.1.0\"\n", "")
    );
    let out = invalid(&env, &text);
    let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let image = line_of("[provider.kubernetes]");
    assert!(
        out.contains(&format!("the workers need an image, and none is set\n  --> lab.toml:{image}:1")),
        "{out}"
    );
}

#[test]
fn students_on_a_cluster_need_one_the_lab_makes_and_an_image() {
    let env = Env::new();
    let _s = stable(&env);
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/aws-eks.toml")).unwrap();
    let on_aws = example.replace(
        "kubernetes = { cluster = \"shared\", image = \"ghcr.io/labctl/workers:0.1.0\" }",
        "kubernetes = { cluster = \"sahred\" }",
    );
    insta::assert_snapshot!("eks_cluster_missing", invalid(&env, &on_aws));
    let no_image = example.replace(", image = \"ghcr.io/labctl/workers:0.1.0\" }", " }");
    insta::assert_snapshot!("eks_image_missing", invalid(&env, &no_image));
    let local = good().replace("[student]\n", "[student]\nkubernetes = { cluster = \"shared\" }\n");
    insta::assert_snapshot!("eks_on_local", invalid(&env, &local));
}

/// The cohorts put on the cluster are the lab's, each once, at least one, not all of them
/// when `compute` asks for VMs; GPUs go only to cohorts there (not to VMs). On AWS as on
/// GCP, the cohorts listed get namespaces and no VM, the others VMs and no namespace.
#[test]
fn cohorts_on_the_cluster_are_the_labs_and_gpus_go_only_there() {
    let env = Env::new();
    let _s = stable(&env);
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gcp.toml")).unwrap();
    let listed = "cohorts = [\"deep-learning\"]";
    assert!(example.contains(listed));
    let unknown = example.replace(listed, "cohorts = [\"deep-learnin\", \"mon\", \"mon\"]");
    insta::assert_snapshot!("cohorts_on_cluster_unknown", invalid(&env, &unknown));
    let gpus_on_vms = example.replace(listed, "cohorts = [\"mon\"]");
    insta::assert_snapshot!("cohorts_on_cluster_gpus_on_vms", invalid(&env, &gpus_on_vms));
    let none = example.replace(listed, "cohorts = []");
    insta::assert_snapshot!("cohorts_on_cluster_none", invalid(&env, &none));
    let all = example.replace(&format!(", {listed}"), "");
    insta::assert_snapshot!("cohorts_on_cluster_all_with_compute", invalid(&env, &all));

    let aws = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/aws.toml")).unwrap();
    let workers = "workers = { mapreduce = { workers = 2 }";
    assert!(aws.contains(workers));
    let mixed = aws
        .replace(
            "[student]\n",
            "[[cohort]]\nname = \"deep-learning\"\nstudents = [{ id = \"kay\" }]\ngpu = { count = 1 }\n\n[student]\n",
        )
        .replace(
            workers,
            &format!("kubernetes = {{ cluster = \"shared\", image = \"ghcr.io/labctl/workers:0.1.0\", {listed} }}\n{workers}"),
        );
    env.write("lab.toml", &mixed);
    let plan = env.run(&["plan", "lab.toml"]).ok().stdout;
    for (student, has, lacks) in [("ada", "vm", "namespace"), ("kay", "namespace", "vm")] {
        assert!(plan.contains(&format!("+ student[\"{student}\"].{has} ")), "{student}: {plan}");
        assert!(!plan.contains(&format!("+ student[\"{student}\"].{lacks} ")), "{student}: {plan}");
    }
}

#[test]
fn gpus_on_machines_gke_gives_none_and_aws_images_on_gcp_are_refused() {
    let env = Env::new();
    let _s = stable(&env);
    let gcp = "[provider.gcp]\nproject = \"my-teaching-project\"\nregion = \"europe-west1\"";
    let text = good().replace("[provider.local]", gcp)
        + "\n[student.compute]\ninstance_type = \"e2-standard-2\"\nimage_owner = \"099720109477\"\n"
        + "\n[cluster.shared]\nnode_pool.cpu = { instance_type = \"e2-standard-4\", max = 2 }\n"
        + "node_pool.gpu = { instance_type = \"e2-standard-4\", max = 1, gpu = 1 }\n"
        + "node_pool.t4 = { instance_type = \"n1-standard-4\", max = 1, gpu = 3 }\n";
    insta::assert_snapshot!(invalid(&env, &text));
}

#[test]
fn a_gcp_project_id_that_is_not_one_is_pointed_at() {
    let env = Env::new();
    let _s = stable(&env);
    let text = lab("lab1", &["ada"], 0)
        .replace("[provider.local]", "[provider.gcp]\nproject = \"My Project\"\nregion = \"europe-west1\"");
    insta::assert_snapshot!(invalid(&env, &text));
}

#[test]
fn a_student_id_that_would_be_a_system_account_on_the_vm_is_refused() {
    let env = Env::new();
    let _s = stable(&env);
    insta::assert_snapshot!(invalid(&env, &lab("lab1", &["ada", "root"], 0)));
}

#[test]
fn notebooks_need_a_provider_that_gives_them_dask_workers_and_plain_requirements() {
    let env = Env::new();
    let _s = stable(&env);
    let notebook = "[student]\nsmoke = [\"notebook\"]\n\
                    notebook = { dask_workers = 0, packages = [\"pandas\", \"--index-url=http://example.com\", \"numpy scipy\"] }\n";
    let local = good().replace("[student]\n", notebook);
    insta::assert_snapshot!("notebook_on_local", invalid(&env, &local));
    let example = |name: &str| {
        let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap().replace("[student]\n", "[student]\nnotebook = {}\n")
    };
    insta::assert_snapshot!("notebook_on_kubernetes", invalid(&env, &example("kubernetes.toml")));
    let on_eks = example("aws-eks.toml");
    insta::assert_snapshot!("notebook_on_eks", invalid(&env, &on_eks));
    let without = good().replace("[student]\n", "[student]\nsmoke = [\"notebook\"]\n");
    insta::assert_snapshot!("notebook_check_without_notebooks", invalid(&env, &without));
    let bucketless = good().replace(
        "bucket = { datasets = [\"corpus\", \"table\"] }\n",
        "notebook = { starters = [\"missing.ipynb\"] }\n",
    );
    insta::assert_snapshot!("notebook_without_a_bucket_or_its_starter", invalid(&env, &bucketless));
    // A starter's name becomes a file name in students' homes and their VMs' scripts.
    env.write("ada's lab.ipynb", r#"{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}"#);
    let quoted =
        good().replace("[student]\n", "[student]\nnotebook = { starters = [\"ada's lab.ipynb\"] }\n");
    insta::assert_snapshot!("notebook_starter_named_with_a_quote", invalid(&env, &quoted));
}
