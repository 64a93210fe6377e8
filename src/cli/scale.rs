//! `labctl scale`: an instructor warms a node pool before class and empties it after. The
//! size is written into the lab file (`desired` of the pool), so the file stays the truth
//! and a later apply keeps it; then only that pool is applied, whatever size it runs now.

use std::io::Write as _;
use std::path::Path;

use labctl_provider_api::Address;
use toml_edit::{value, DocumentMut, Item};

use super::args::{Place, RunOptions};
use super::commands::{confirm, engine_options, execute, make_plan};
use super::error::CliError;
use super::open::Opened;
use crate::plan::{self, Plan};
use crate::{lab, report};

/// What `labctl scale` was asked.
pub(super) struct Scale<'a> {
    pub lab: &'a Path,
    pub place: &'a Place,
    pub pool: &'a str,
    pub cluster: Option<&'a str>,
    pub nodes: u32,
    pub yes: bool,
}

pub(super) async fn scale(s: Scale<'_>, run: &RunOptions) -> Result<u8, CliError> {
    let read =
        |e: &std::io::Error| CliError::invalid(format!("cannot read {}", s.lab.display())).caused_by(e);
    let before = std::fs::read_to_string(s.lab).map_err(|e| read(&e))?;
    let (cluster, after) = set_desired(&before, s.cluster, s.pool, s.nodes)
        .map_err(|why| CliError::invalid(format!("{}: {why}", s.lab.display())))?;
    write(s.lab, &after)?;
    // Whatever stops it before the pool is applied (an invalid size, a held lock, a "no")
    // puts the file back as it was.
    let scaled = apply_pool(&s, &cluster, run).await;
    if scaled.is_err() {
        write(s.lab, &before)?;
    }
    scaled
}

/// Plans and applies the pool `s.pool` of `cluster` alone, as the lab file now says.
async fn apply_pool(s: &Scale<'_>, cluster: &str, run: &RunOptions) -> Result<u8, CliError> {
    let o = Opened::open(s.lab, s.place)?;
    let address = Address::top("cluster", cluster).keyed("node_pool", s.pool).to_string();
    let desired = lab::expand(&o.lab, o.setup.as_ref());
    if !desired.iter().any(|n| n.spec.address == address) {
        return Err(CliError::invalid(format!(
            "{}: the {} provider makes no node pools to scale",
            s.lab.display(),
            o.setup.name()
        )));
    }
    let options = engine_options(run, o.setup.as_ref())?;
    let lock = o.lock("scale")?;
    let mut state = o.load_state()?;
    let mut whole = make_plan(&o, &state, false).await?;
    let pending = whole.actions.iter().filter(|a| a.address != address).count();
    // The file may already say this size while the pool runs another (the autoscaler's).
    plan::force_update(&desired, &mut whole.actions, "node_pool", "labctl scale");
    let plan =
        Plan { actions: whole.actions.into_iter().filter(|a| a.address == address).collect(), ..whole };
    if !run.json {
        let _ = write!(anstream::stdout(), "{}", report::render_plan(&plan, o.students()));
        if pending > 0 {
            println!("\n{pending} other changes are pending and left alone: `labctl apply` makes them.");
        }
    }
    if !s.yes {
        confirm("scale")?;
    }
    let executed = execute(&plan, &mut state, &o.store, &o.registry, &options, "Scale", run.json).await?;
    drop(lock);
    if run.json {
        super::commands::print_json(&executed.summary);
    }
    Ok(executed.code)
}

/// The lab file `text` with `desired = nodes` in pool `pool` of `cluster` (the only cluster
/// with such a pool when not named), and that cluster's name; or why not.
fn set_desired(
    text: &str,
    cluster: Option<&str>,
    pool: &str,
    nodes: u32,
) -> Result<(String, String), String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    let clusters = doc.get("cluster").and_then(Item::as_table_like);
    let mut having: Vec<String> = clusters
        .iter()
        .flat_map(|c| c.iter())
        .filter(|(name, c)| cluster.is_none_or(|wanted| wanted == *name) && has_pool(c, pool))
        .map(|(name, _)| name.to_owned())
        .collect();
    let name = match (having.len(), cluster) {
        (1, _) => having.remove(0),
        (0, Some(c)) => return Err(format!("[cluster.{c}] has no node pool `{pool}`")),
        (0, None) => return Err(format!("no [cluster.<name>.node_pool.{pool}] to scale")),
        _ => {
            return Err(format!(
                "clusters {} all have a pool `{pool}`: say which with --cluster",
                having.join(", ")
            ))
        }
    };
    let table = doc["cluster"][name.as_str()]["node_pool"][pool]
        .as_table_like_mut()
        .ok_or_else(|| format!("[cluster.{name}.node_pool.{pool}] is not a table"))?;
    table.insert("desired", value(i64::from(nodes)));
    Ok((name, doc.to_string()))
}

fn has_pool(cluster: &Item, pool: &str) -> bool {
    cluster.get("node_pool").and_then(|p| p.get(pool)).is_some()
}

/// Replaces the lab file at once (a temporary file beside it, renamed over it).
fn write(path: &Path, text: &str) -> Result<(), CliError> {
    let failed =
        |e: &std::io::Error| CliError::failed(format!("cannot write {}", path.display())).caused_by(e);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| failed(&e))?;
    file.write_all(text.as_bytes()).map_err(|e| failed(&e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        file.as_file().set_permissions(meta.permissions()).map_err(|e| failed(&e))?;
    }
    file.persist(path).map_err(|e| failed(&e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::set_desired;

    const LAB: &str = r#"[lab]
name = "l"

# The shared cluster.
[cluster.shared.node_pool.cpu]
instance_type = "m5.large"
max = 5

[cluster.shared.node_pool.gpu]
instance_type = "g4dn.xlarge" # one GPU
max = 2
desired = 0
gpu = 1
"#;

    #[test]
    fn the_pools_size_is_written_in_place_and_nothing_else_moves() {
        let (cluster, text) = set_desired(LAB, None, "gpu", 2).unwrap();
        assert_eq!(cluster, "shared");
        assert_eq!(text, LAB.replace("desired = 0", "desired = 2"));
        let (_, text) = set_desired(LAB, Some("shared"), "cpu", 3).unwrap();
        assert!(text.contains("max = 5\ndesired = 3\n"), "{text}");
        assert!(text.contains("# The shared cluster."), "{text}");
    }

    #[test]
    fn a_pool_that_is_not_there_or_is_ambiguous_is_refused() {
        assert_eq!(
            set_desired(LAB, None, "tpu", 1).unwrap_err(),
            "no [cluster.<name>.node_pool.tpu] to scale"
        );
        assert_eq!(
            set_desired(LAB, Some("other"), "gpu", 1).unwrap_err(),
            "[cluster.other] has no node pool `gpu`"
        );
        let two = format!("{LAB}\n[cluster.spare.node_pool.gpu]\ninstance_type = \"x\"\nmax = 1\n");
        assert_eq!(
            set_desired(&two, None, "gpu", 1).unwrap_err(),
            "clusters shared, spare all have a pool `gpu`: say which with --cluster"
        );
    }
}
