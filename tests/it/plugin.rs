//! A scratch provider written here, in the test, goes through validate, plan, apply,
//! status and handouts with nothing in the core knowing it: the plugin contract is all a
//! provider needs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use labctl::engine::{self, Event, Observer, Options, Providers, RetryPolicy};
use labctl::lab::{self, Cohort, Lab, Student};
use labctl::plan::{self, Plan, SavedProvider, PLAN_FORMAT};
use labctl::state::StateStore;
use labctl_provider_api::lab::{LabSections, SmokeWorkload};
use labctl_provider_api::{
    Address, Capabilities, Connected, Deps, Endpoints, Findings, Found, KindSchema, Node, Observed, Plugin,
    Provider, ProviderError, ProviderSetup, ResourceSpec, Settings, SmokeRunner, StudentResources, Tags,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::support::Env;

/// `[provider.scratch]`: what every student's note says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScratchSettings {
    greeting: String,
}

struct ScratchPlugin;

impl Plugin for ScratchPlugin {
    fn name(&self) -> &'static str {
        "scratch"
    }

    fn settings_schema(&self) -> Value {
        json!({ "type": "object", "properties": { "greeting": { "type": "string" } } })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn configure(
        &self,
        settings: &Settings,
        _lab: &LabSections,
        findings: &mut Findings,
    ) -> Option<Box<dyn ProviderSetup>> {
        let s: ScratchSettings = settings.parse_into(self.name(), findings)?;
        if s.greeting.is_empty() {
            findings.errors.push(settings.source.error(settings.span.clone(), "the greeting is empty"));
            return None;
        }
        Some(Box::new(ScratchSetup { settings: s, notes: Arc::default() }))
    }

    fn restore(&self, saved: Value) -> Result<Box<dyn ProviderSetup>, String> {
        let settings = serde_json::from_value(saved).map_err(|e| e.to_string())?;
        Ok(Box::new(ScratchSetup { settings, notes: Arc::default() }))
    }
}

/// Notes by id: the scratch provider's whole world.
type Notes = Arc<Mutex<HashMap<String, Tags>>>;

/// Saved in a plan as its settings.
#[derive(Debug, Serialize)]
struct ScratchSetup {
    #[serde(flatten)]
    settings: ScratchSettings,
    #[serde(skip)]
    notes: Notes,
}

#[derive(Serialize)]
struct NoteConfig<'a> {
    text: String,
    student: &'a str,
}

impl ProviderSetup for ScratchSetup {
    fn name(&self) -> &'static str {
        "scratch"
    }

    fn rate_limit(&self) -> Option<f64> {
        None
    }

    fn expand_student(&self, lab: &Lab, cohort: &Cohort, student: &Student) -> Vec<Node> {
        let tags = lab.tags(cohort, student);
        let config =
            NoteConfig { text: format!("{}, {}", self.settings.greeting, student.id), student: &student.id };
        vec![Node::new(
            "scratch",
            Address::student(&student.id).child("note"),
            "note",
            &config,
            &tags,
            vec![],
        )]
    }

    fn connect(&self, _lab: &str, _bin_dir: &Path) -> Connected {
        let notes = self.notes.clone();
        Connected {
            provider: Arc::new(Scratch(notes.clone())),
            hosted: vec![],
            smoke: Ok(Arc::new(Scratch(notes))),
        }
    }

    fn endpoints(&self, student: &StudentResources) -> Endpoints {
        Endpoints {
            access: student
                .attr("note", "text")
                .map(|t| ("scratch".to_owned(), json!({ "note": t })))
                .into_iter()
                .collect(),
            ..Endpoints::default()
        }
    }

    fn describe(&self, student: &StudentResources) -> Vec<(String, String)> {
        student.resources.get("note").map(|n| ("note".to_owned(), n.id.clone())).into_iter().collect()
    }
}

struct Scratch(Notes);

const KINDS: &[KindSchema] = &[KindSchema { name: "note", replace_on: &["*"] }];

#[async_trait]
impl Provider for Scratch {
    fn name(&self) -> &str {
        "scratch"
    }

    fn kinds(&self) -> &[KindSchema] {
        KINDS
    }

    async fn read(&self, _kind: &str, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
        Ok(self.0.lock().unwrap().contains_key(&prior.id).then(|| prior.clone()))
    }

    async fn create(&self, spec: &ResourceSpec, _deps: &Deps) -> Result<Observed, ProviderError> {
        self.0.lock().unwrap().insert(spec.address.clone(), spec.tags.clone());
        Ok(Observed { id: spec.address.clone(), attributes: spec.config.clone(), sensitive: vec![] })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _prior: &Observed,
        deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        self.create(spec, deps).await
    }

    async fn delete(&self, _kind: &str, prior: &Observed) -> Result<(), ProviderError> {
        self.0.lock().unwrap().remove(&prior.id);
        Ok(())
    }

    async fn sweep(&self, lab: &str) -> Result<Vec<Found>, ProviderError> {
        let notes = self.0.lock().unwrap();
        let mine = notes.iter().filter(|(_, t)| t.lab == lab);
        Ok(mine.map(|(id, tags)| Found { kind: "note".into(), id: id.clone(), tags: tags.clone() }).collect())
    }

    async fn retag(&self, spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError> {
        self.0.lock().unwrap().insert(prior.id.clone(), spec.tags.clone());
        Ok(prior.clone())
    }

    async fn labs(&self) -> Result<Vec<String>, ProviderError> {
        let labs: std::collections::BTreeSet<String> =
            self.0.lock().unwrap().values().map(|t| t.lab.clone()).collect();
        Ok(labs.into_iter().collect())
    }
}

#[async_trait]
impl SmokeRunner for Scratch {
    fn parallel(&self) -> usize {
        1
    }

    async fn run(
        &self,
        _: SmokeWorkload,
        student: &StudentResources,
        _: Option<&str>,
        _: Duration,
    ) -> Result<(), String> {
        let note = student.get("note")?;
        self.0.lock().unwrap().contains_key(&note.id).then_some(()).ok_or_else(|| "the note is gone".into())
    }
}

/// The live scratch provider by name, as the engine looks providers up.
struct Live(Arc<dyn Provider>);

impl Providers for Live {
    fn provider(&self, name: &str) -> Option<Arc<dyn Provider>> {
        (name == "scratch").then(|| self.0.clone())
    }
}

struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: Event<'_>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_written_in_a_test_needs_no_core_change() {
    let env = Env::new();
    let text = r#"
[lab]
name = "scratchlab"

[provider.scratch]
greeting = "hello"

[[cohort]]
name = "mon"
students = [{ id = "ada" }, { id = "bob" }]
"#;
    env.write("lab.toml", text);
    let plugins: Vec<&dyn Plugin> = vec![&ScratchPlugin];
    let cx = lab::Context { plugins: &plugins, data_dir: None };

    // Validate: the plugin's own settings and its own checks, pointed at the file.
    env.write("bad.toml", &text.replace("hello", ""));
    let problems = lab::load(&env.path("bad.toml"), &cx).unwrap_err();
    assert_eq!(problems[0].message, "the greeting is empty");
    assert_eq!((problems[0].line, problems[0].column), (5, 1));
    env.write("typo.toml", &text.replace("greeting", "greting"));
    let problems = lab::load(&env.path("typo.toml"), &cx).unwrap_err();
    assert_eq!(problems[0].message, "unknown key `greting`");
    let lab::Loaded { lab, setup } = lab::load(&env.path("lab.toml"), &cx).unwrap();

    // Plan and apply.
    let store = StateStore::beside(&env.path("lab.toml"), &lab.name);
    let mut state = store.load(&lab.name).unwrap();
    let live = Live(setup.connect(&lab.name, Path::new(".")).provider);
    let options = Options { parallelism: 4, retry: RetryPolicy::default() };
    let desired = lab::expand(&lab, setup.as_ref());
    let refreshed = engine::refresh(&state, &live, &options).await.unwrap();
    let actions = plan::diff(&desired, &state, &refreshed, |_, k| KINDS.iter().find(|s| s.name == k));
    assert_eq!(actions.len(), 2);
    let plan = Plan {
        format: PLAN_FORMAT.into(),
        lab: lab.name.clone(),
        lineage: state.lineage.clone(),
        serial: state.serial,
        state_path: store.absolute(),
        provider: SavedProvider { name: setup.name().into(), settings: setup.save() },
        destroy: false,
        expires: None,
        lab_file: None,
        actions,
        cost: None,
    };
    let (_tx, mut interrupts) = engine::Interrupts::channel();
    let report =
        engine::execute(&plan, &mut state, &store, &live, &options, &mut interrupts, &mut Quiet).await;
    assert!(report.is_success(), "{report:?}");
    let refreshed = engine::refresh(&state, &live, &options).await.unwrap();
    assert!(plan::diff(&desired, &state, &refreshed, |_, k| KINDS.iter().find(|s| s.name == k)).is_empty());

    // Status and handouts, from what the provider says of each student.
    let students = labctl::verify::students(&state);
    assert_eq!(setup.describe(&students["ada"]), [("note".to_owned(), "student[\"ada\"].note".to_owned())]);
    let files = labctl::report::write_handouts(&lab, &state, &env.path("handouts"), setup.as_ref()).unwrap();
    assert_eq!(files.len(), 4);
    let handout = std::fs::read_to_string(env.path("handouts/ada.md")).unwrap();
    assert!(handout.contains("ada"), "{handout}");

    // Verify through its smoke runner.
    let runner = setup.connect(&lab.name, Path::new(".")).smoke.unwrap();
    assert_eq!(
        runner.run(SmokeWorkload::Wordcount, &students["bob"], None, Duration::from_secs(1)).await,
        Ok(())
    );
}
