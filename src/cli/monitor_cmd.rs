//! `steerscope monitor`: a fixed direction's projection and the refusal rate across checkpoints.

use std::fmt::Write as _;
use std::path::PathBuf;

use candle_core::Device;
use clap::Args;

use steerscope::model::{parse_device, Model};
use steerscope::steer::monitor::{monitor as run, scan_layers, AlertRule};
use steerscope::vector::{sidecar_layer, update_sidecar, SteeringVector};

#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Checkpoints in training order (model folders, .gguf files or HF cache ids).
    #[arg(long, num_args = 1.., required = true)]
    pub checkpoints: Vec<String>,
    /// The fixed direction (a vector file; `direction.L` is used for `--layer L`).
    #[arg(long, short = 'v')]
    pub vector: PathBuf,
    /// Layer whose output is projected; default: the vector sidecar's `monitor_layer`, else its
    /// `best_layer`.
    #[arg(long, short = 'l')]
    pub layer: Option<usize>,
    /// Held-out harmless prompts.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Harmful prompts too (sets the alert threshold relative to their projection).
    #[arg(long)]
    pub harmful: Option<PathBuf>,
    /// Alert when the projection rises this fraction of the way to the harmful projection
    /// (or by this much, without --harmful).
    #[arg(long, default_value_t = 0.25)]
    pub projection_rise: f64,
    /// ... before the refusal rate rises this much above the first checkpoint's.
    #[arg(long, default_value_t = 0.1)]
    pub rate_rise: f64,
    #[command(flatten)]
    pub eval: super::EvalArgs,
    /// cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Write the table as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Instead of monitoring: for every layer, correlate its projection with the refusal rate
    /// on --prompts across the checkpoints (use training prompts), and report the best layer.
    #[arg(long)]
    pub scan_layers: bool,
    /// With --scan-layers: write the best layer into the vector's sidecar as `monitor_layer`.
    #[arg(long, requires = "scan_layers")]
    pub write_sidecar: bool,
}

/// Loads the checkpoints in order, handing out `first` (checkpoint 0, loaded up front to check
/// the vector against it) instead of loading it twice.
fn loader(first: Model, device: &Device) -> impl FnMut(&str) -> steerscope::Result<Model> + '_ {
    let mut first = Some(first);
    move |spec| match first.take() {
        Some(m) => Ok(m),
        None => Model::load(spec, device),
    }
}

fn scan(a: &MonitorArgs, device: &Device, prompts: &[String]) -> anyhow::Result<()> {
    let first = Model::load(&a.checkpoints[0], device)?;
    let vector = SteeringVector::load_for(&a.vector, &first)?;
    let rs = scan_layers(
        &a.checkpoints,
        &mut loader(first, device),
        &vector,
        prompts,
        &a.eval.options()?,
        &mut super::progress("scanning", "checkpoints"),
    )?;
    eprintln!();
    println!(
        "layer  Pearson r (projection, refusal rate) over {} checkpoints",
        a.checkpoints.len()
    );
    for (l, r) in &rs {
        println!("{l:>5}  {r:>7.3}");
    }
    let best = rs
        .iter()
        .filter(|(_, r)| r.is_finite())
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .map(|(l, _)| *l);
    match best {
        Some(l) => println!("best layer to monitor: {l}"),
        None => println!("no layer's projection correlates (constant series)"),
    }
    if a.write_sidecar {
        let scan = serde_json::json!({
            "prompts": a.prompts.file_name().map(|f| f.to_string_lossy().into_owned()),
            "n_prompts": prompts.len(),
            "checkpoints": a.checkpoints,
            "pearson_r_by_layer": rs.iter().map(|(l, r)| serde_json::json!({"layer": l, "r": r})).collect::<Vec<_>>(),
        });
        let side = update_sidecar(
            &a.vector,
            &[
                ("monitor_layer", serde_json::json!(best)),
                ("monitor_scan", scan),
            ],
        )?;
        eprintln!("wrote monitor_layer into {}", side.display());
    }
    Ok(())
}

pub fn monitor(a: &MonitorArgs) -> anyhow::Result<()> {
    let device = parse_device(&a.device)?;
    let prompts = a.eval.prompts(&a.prompts)?;
    if a.scan_layers {
        return scan(a, &device, &prompts);
    }
    let Some(layer) = a
        .layer
        .or_else(|| sidecar_layer(&a.vector, "monitor_layer"))
        .or_else(|| sidecar_layer(&a.vector, "best_layer"))
    else {
        anyhow::bail!(
            "--layer: missing, and {} has no sidecar with monitor_layer or best_layer (give --layer L)",
            a.vector.display()
        );
    };
    let harmful = a.harmful.as_ref().map(|p| a.eval.prompts(p)).transpose()?;
    // The first checkpoint fixes the width the vector must have (and fails early when bad).
    let first = Model::load(&a.checkpoints[0], &device)?;
    let dir = SteeringVector::load_for(&a.vector, &first)?.for_layer(layer)?;
    let report = run(
        &a.checkpoints,
        &mut loader(first, &device),
        &dir,
        layer,
        &prompts,
        harmful.as_deref(),
        &a.eval.options()?,
        AlertRule {
            projection_rise: a.projection_rise,
            rate_rise: a.rate_rise,
        },
        &mut super::progress("monitoring", "checkpoints"),
    )?;
    eprintln!();
    if let Some(path) = &a.csv {
        let mut csv = String::from("checkpoint,projection,refusal_rate,refusal_score,harmful_projection,harmful_refusal_rate\n");
        for r in &report.rows {
            let opt = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
            let _ = writeln!(
                csv,
                "{},{:.6},{:.6},{:.6},{},{}",
                r.checkpoint,
                r.projection,
                r.refusal_rate,
                r.refusal_score,
                opt(r.harmful_projection),
                opt(r.harmful_refusal_rate)
            );
        }
        super::write_file(path, &csv)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "layer {layer}; projection and refusal on {} harmless prompts",
        prompts.len()
    );
    println!(
        "{:<40} {:>10} {:>8} {:>8} {:>9}",
        "checkpoint", "projection", "refusal", "score", "harmful"
    );
    for r in &report.rows {
        let harmful = r
            .harmful_refusal_rate
            .map_or_else(String::new, |h| format!("{:.0}%", 100.0 * h));
        println!(
            "{:<40} {:>10.3} {:>7.0}% {:>8.2} {:>9}",
            r.checkpoint,
            r.projection,
            100.0 * r.refusal_rate,
            r.refusal_score,
            harmful
        );
    }
    match report.pearson_r {
        Some(r) => println!("Pearson r (projection, refusal rate): {r:.3}"),
        None => println!("Pearson r: undefined (a constant series)"),
    }
    match &report.alert {
        Some(al) => println!(
            "ALERT: projection passed {:.3} at checkpoint {} ({}); refusal rate rose {}",
            al.projection_threshold,
            al.projection_checkpoint,
            report.rows[al.projection_checkpoint].checkpoint,
            al.refusal_checkpoint.map_or_else(
                || "at no checkpoint yet".to_owned(),
                |q| format!(
                    "only at checkpoint {q} ({} later)",
                    q - al.projection_checkpoint
                )
            )
        ),
        None => println!("no early warning: the projection did not rise before the refusal rate"),
    }
    Ok(())
}
