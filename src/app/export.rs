//! Exports: the current plots' data as CSV or JSON, and a PNG of the window.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::Runtime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

fn stamped(dir: &Path, stem: &str, ext: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: cannot create the export folder: {e}", dir.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Ok(dir.join(format!("{stem}-{stamp}.{ext}")))
}

/// Every plotted number in long form: `plot,stream,layer,token,value`.
#[must_use]
pub fn plots_csv(rt: &Runtime) -> String {
    let mut out = String::from("plot,stream,layer,token,value\n");
    if let Some(g) = &rt.generation {
        let p = &g.plots;
        for (row, stream) in g.streams.iter().enumerate() {
            let name = format!("{:?}", stream.kind).to_lowercase();
            let series: [(&str, &Vec<Vec<f32>>); 5] = [
                ("resid_norm", &p.resid_norm),
                ("attn_norm", &p.attn_norm),
                ("mlp_norm", &p.mlp_norm),
                ("attn_contrib", &p.attn_contrib),
                ("mlp_contrib", &p.mlp_contrib),
            ];
            for (plot, values) in series {
                for (l, v) in values.get(row).into_iter().flatten().enumerate() {
                    let _ = writeln!(out, "{plot},{name},{l},,{v}");
                }
            }
            for (l, tokens) in p.resid_proj.get(row).into_iter().flatten().enumerate() {
                for (t, v) in tokens.iter().enumerate() {
                    let _ = writeln!(out, "resid_proj,{name},{l},{t},{v}");
                }
            }
        }
    }
    if let Some(s) = &rt.sweep {
        for c in &s.cells {
            let layer = c.layer_idx.map(|l| l.to_string()).unwrap_or_default();
            let _ = writeln!(
                out,
                "sweep_refusal_rate,strength={},{layer},,{}",
                c.strength, c.refusal_rate
            );
        }
    }
    if let Some((report, checkpoints)) = &rt.monitor {
        for (i, row) in report.rows.iter().enumerate() {
            let name = checkpoints.get(i).map_or("", String::as_str);
            let _ = writeln!(
                out,
                "monitor_projection,{name},{},,{}",
                report.layer_idx, row.projection
            );
            let _ = writeln!(
                out,
                "monitor_refusal_rate,{name},{},,{}",
                report.layer_idx, row.refusal_rate
            );
        }
    }
    out
}

/// The generation (streams, plots, settings), sweep and monitor results as one JSON object.
pub fn plots_json(rt: &Runtime) -> Result<String, String> {
    let value = serde_json::json!({
        "generation": rt.generation,
        "sweep": rt.sweep,
        "monitor": rt.monitor.as_ref().map(|(r, c)| serde_json::json!({"report": r, "checkpoints": c})),
    });
    serde_json::to_string_pretty(&value).map_err(|e| format!("cannot encode the plots: {e}"))
}

/// Write the plots' data to a new file in `dir`.
pub fn write(dir: &Path, format: Format, rt: &Runtime) -> Result<PathBuf, String> {
    if rt.generation.is_none() && rt.sweep.is_none() && rt.monitor.is_none() {
        return Err("nothing to export yet: generate first".into());
    }
    let (text, ext) = match format {
        Format::Csv => (plots_csv(rt), "csv"),
        Format::Json => (plots_json(rt)?, "json"),
    };
    let path = stamped(dir, "steerscope-plots", ext)?;
    std::fs::write(&path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    Ok(path)
}

/// Write the window screenshot as a PNG in `dir`.
pub fn save_png(image: &egui::ColorImage, dir: &Path) -> Result<PathBuf, String> {
    let path = stamped(dir, "steerscope-window", "png")?;
    let [w, h] = image.size;
    let rgba: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(egui::Color32::to_array)
        .collect();
    image::save_buffer(&path, &rgba, w as u32, h as u32, image::ColorType::Rgba8)
        .map_err(|e| format!("{}: cannot write the PNG: {e}", path.display()))?;
    Ok(path)
}
