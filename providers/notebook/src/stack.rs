//! The lab's Python environment: one virtualenv per lab with JupyterLab, Dask, PySpark
//! and the lab's own packages, from PyPI. The versions pip chose the first time are pinned
//! in `requirements.lock` beside it, so rebuilding it (a deleted or broken environment)
//! installs the same versions and a re-apply does not drift.

use std::path::{Path, PathBuf};
use std::process::Command;

use labctl_provider_api::lab::NotebookSpec;

/// What labctl itself runs in every student's environment.
const STACK: &[&str] = &["jupyterlab", "ipykernel", "dask[distributed]"];

/// The pip requirements of a lab's environment: labctl's stack (with PySpark if the lab
/// wants it), then the lab's own packages, each once.
pub fn requirements(spec: &NotebookSpec) -> Vec<String> {
    let spark = spec.spark().then_some("pyspark");
    let own = spec.packages.iter().map(|p| p.get_ref().as_str());
    let mut out: Vec<String> = vec![];
    for r in STACK.iter().copied().chain(spark).chain(own) {
        if !out.iter().any(|o| o == r) {
            out.push(r.to_owned());
        }
    }
    out
}

/// JupyterLab's settings for every student (`overrides.json`).
const LAB_SETTINGS: &str = r#"{ "@jupyterlab/apputils-extension:notification": { "fetchNews": "false" } }"#;

/// A lab's Python environment in `dir`: the virtualenv `env/`, and the pins.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    dir: PathBuf,
}

impl PythonEnv {
    pub fn at(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    /// Where its programs are (`python`, `jupyter`, `dask`).
    pub fn bin(&self) -> PathBuf {
        self.dir.join("env").join("bin")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("requirements.lock")
    }

    /// Written last by a build: the environment is complete for these requirements.
    fn ready_path(&self) -> PathBuf {
        self.dir.join("env").join(".labctl-ready")
    }

    /// The pinned versions, if the environment is complete.
    pub fn ready(&self) -> Option<Vec<String>> {
        let built_for = std::fs::read_to_string(self.ready_path()).ok()?;
        let (header, pins) = self.lock()?;
        (header == built_for).then_some(pins)
    }

    /// The lock file's first line (the requirements it pins) and its pins.
    fn lock(&self) -> Option<(String, Vec<String>)> {
        let text = std::fs::read_to_string(self.lock_path()).ok()?;
        let mut lines = text.lines();
        let header = lines.next()?.to_owned();
        Some((header, lines.map(str::to_owned).collect()))
    }

    /// Makes the environment hold `requirements` (with `python3`), unless it already does:
    /// at the pinned versions if they were pinned for these requirements, else at what pip
    /// resolves now, then pinned. Returns the pins.
    pub fn build(&self, requirements: &[String]) -> Result<Vec<String>, String> {
        // Another Python may not install the same pins: it resolves afresh.
        let version = run(Command::new("python3").arg("--version"), "python3 --version")?;
        let header =
            format!("# labctl requirements: {} on {}", serde_json::json!(requirements), version.trim());
        let pinned = self.lock().filter(|(h, _)| *h == header).map(|(_, pins)| pins);
        // Pinned for these requirements, and built from those pins.
        if let (Some(pins), Some(_)) = (&pinned, self.ready()) {
            return Ok(pins.clone());
        }
        let env = self.dir.join("env");
        match std::fs::remove_dir_all(&env) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("{}: {e}", env.display()))
            }
            _ => {}
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        run(Command::new("python3").args(["-m", "venv"]).arg(&env), "python3 -m venv")?;
        let python = self.bin().join("python");
        let pip = |args: &[&str]| {
            let mut command = Command::new(&python);
            command.args(["-m", "pip", "--disable-pip-version-check", "--no-input"]).args(args);
            command
        };
        let pins = match pinned {
            Some(pins) => {
                let lock = self.lock_path().display().to_string();
                run(&mut pip(&["install", "--progress-bar", "off", "-q", "-r", &lock]), "pip install")?;
                pins
            }
            None => {
                let mut install = pip(&["install", "--progress-bar", "off", "-q"]);
                run(install.args(requirements), "pip install")?;
                let frozen = run(&mut pip(&["freeze", "--exclude-editable"]), "pip freeze")?;
                let pins: Vec<String> = frozen.lines().map(str::to_owned).collect();
                write(&self.lock_path(), &format!("{header}\n{}\n", pins.join("\n")))?;
                pins
            }
        };
        // Students are not asked whether JupyterLab may fetch Jupyter's news from the internet.
        let settings = env.join("share/jupyter/lab/settings");
        std::fs::create_dir_all(&settings).map_err(|e| format!("{}: {e}", settings.display()))?;
        write(&settings.join("overrides.json"), LAB_SETTINGS)?;
        write(&self.ready_path(), &header)?;
        Ok(pins)
    }
}

/// The lab's environment packed for machines that install it with no index access (the
/// students' VMs): a tar of `requirements.lock`, JupyterLab's settings and a wheel of every
/// pinned package.
#[derive(Debug, Clone)]
pub struct Wheelhouse {
    pub path: PathBuf,
    pub sha256: String,
    /// `Python 3.11.2`: the wheels with compiled code are for this Python only.
    pub python: String,
}

/// What installs an unpacked wheelhouse on a VM (in its directory, after `python3 -m venv`).
/// The VM's Python has the same minor version as the one the pins were resolved with, but
/// perhaps another patch release: a package asking for a later one (`>=3.11.5`) installs
/// anyway, as patch releases keep the language and its ABI.
pub const WHEELHOUSE_INSTALL: &str =
    "pip install --no-index --find-links wheels --ignore-requires-python --progress-bar off -q -r requirements.lock";

impl PythonEnv {
    /// Packs the built environment's pins as a wheelhouse (`wheelhouse.tar` beside it), with
    /// pip's wheels for them (from pip's cache when it has them); the same pins make the same
    /// tar, byte for byte.
    pub fn wheelhouse(&self) -> Result<Wheelhouse, String> {
        let (header, _) = self.lock().ok_or("the Python environment is not built")?;
        let stage = self.dir.join("wheelhouse");
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir_all(&stage).map_err(|e| format!("{}: {e}", stage.display()))?;
        let python = self.bin().join("python");
        let lock = self.lock_path().display().to_string();
        let wheels = stage.join("wheels").display().to_string();
        run(
            Command::new(&python)
                .args(["-m", "pip", "--disable-pip-version-check", "--no-input", "wheel", "--no-deps"])
                .args(["--progress-bar", "off", "-q", "-w", &wheels, "-r", &lock]),
            "pip wheel",
        )?;
        std::fs::copy(self.lock_path(), stage.join("requirements.lock"))
            .map_err(|e| format!("{}: {e}", stage.display()))?;
        write(&stage.join("overrides.json"), LAB_SETTINGS)?;
        let path = self.dir.join("wheelhouse.tar");
        // GNU tar: names sorted, owners and times fixed, so equal pins make an equal tar.
        let mut tar = Command::new("tar");
        tar.args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&path)
            .arg("-C")
            .arg(&stage)
            .args(["requirements.lock", "overrides.json", "wheels"]);
        run(&mut tar, "tar")?;
        let _ = std::fs::remove_dir_all(&stage);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let python = header.rsplit(" on ").next().unwrap_or_default().to_owned();
        Ok(Wheelhouse { path, sha256: labctl_provider_api::sha256(&bytes), python })
    }
}

/// Checks that this machine can build the environment: Python 3 with `venv` and `pip`.
pub fn preflight_python() -> Result<(), String> {
    let python = Command::new("python3").args(["-c", "import venv, ensurepip"]).output();
    if !python.is_ok_and(|o| o.status.success()) {
        return Err("students' notebooks need python3 with venv and pip here: install python3-venv".into());
    }
    Ok(())
}

/// Checks that this machine can build and run the environment: Python 3 with `venv` and
/// `pip`, and Java 17 or later for PySpark.
pub fn preflight(spec: &NotebookSpec) -> Result<(), String> {
    preflight_python()?;
    if spec.spark() {
        let java = Command::new("java").arg("-version").output().map_err(|_| NO_JAVA.to_owned())?;
        // `openjdk version "17.0.15"`, `java version "1.8.0_…"`: on stderr.
        let text = String::from_utf8_lossy(&java.stderr);
        let major =
            text.split('"').nth(1).and_then(|v| v.split('.').next()).and_then(|m| m.parse::<u32>().ok());
        if major.is_none_or(|m| m < 17) {
            return Err(format!("{NO_JAVA} (found: {})", text.lines().next().unwrap_or("none")));
        }
    }
    Ok(())
}

const NO_JAVA: &str =
    "PySpark needs Java 17 or later here: install openjdk-17-jre-headless, or set spark = false in [student.notebook]";

/// Runs `command`; its stdout, or `what` failed with the end of its stderr.
fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(format!("{what} failed: {}", lines[lines.len().saturating_sub(3)..].join(" / ")))
}

/// Writes `path` whole or not at all.
fn write(path: &Path, text: &str) -> Result<(), String> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use labctl_provider_api::lab::NotebookSpec;

    use super::requirements;

    #[test]
    fn the_stack_comes_first_then_the_labs_packages_each_once() {
        let spec: NotebookSpec = toml::from_str("packages = [\"pandas\", \"jupyterlab\"]").unwrap();
        assert_eq!(
            requirements(&spec),
            ["jupyterlab", "ipykernel", "dask[distributed]", "pyspark", "pandas"]
        );
        let spec: NotebookSpec = toml::from_str("spark = false").unwrap();
        assert_eq!(requirements(&spec), ["jupyterlab", "ipykernel", "dask[distributed]"]);
    }
}
