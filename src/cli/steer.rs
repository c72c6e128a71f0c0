//! `steerscope steer` and `steerscope generate`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use clap::Args;

use steerscope::generate::{
    generate as run_generation, GenerateRequest, Sampling, StreamSpec, TokenEvent,
};
use steerscope::hooks::{Scope, Steering};
use steerscope::vector::SteeringVector;

use super::{ModelArgs, PromptArgs};

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// New tokens to generate per stream.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling threshold (with --temperature).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Sampling seed (stream i uses seed + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
        }
    }
}

#[derive(Args, Debug)]
pub struct SteerArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    /// Steering vector file (.safetensors, a .gguf control vector, .npy or .pt);
    /// default: the first shipped vector in `vectors/` whose name starts like the model's.
    #[arg(long, short = 'v')]
    pub vector: Option<PathBuf>,
    /// Layer whose output (`blocks.L.hook_resid_post`) the vector is added to; default: the
    /// vector sidecar's `best_layer`, else the middle layer.
    #[arg(long, short = 'l')]
    pub layer: Option<usize>,
    /// Multiple of the vector to add (negative subtracts).
    #[arg(long, short = 's', default_value_t = 3.0, allow_hyphen_values = true)]
    pub strength: f64,
    /// Positions the addition applies to: all, prompt or generated; default: the vector
    /// sidecar's `scope`, else all.
    #[arg(long, value_parser = super::parse_scope)]
    pub scope: Option<Scope>,
    /// Also run a third stream with the direction projected out everywhere (Arditi et al.).
    #[arg(long)]
    pub ablate: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print JSON instead of columns.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn steer(a: &SteerArgs) -> anyhow::Result<()> {
    let model = a.model.load()?;
    let cfg = model.cfg();
    let vector_path = match &a.vector {
        Some(p) => p.clone(),
        None => steerscope::vector::find_shipped(&model.info.path).ok_or_else(|| {
            steerscope::Error::InvalidValue {
                name: "--vector".into(),
                message: format!(
                    "missing, and no shipped vector in vectors/ matches {} (give --vector FILE)",
                    model.info.path.display()
                ),
            }
        })?,
    };
    if a.vector.is_none() {
        eprintln!("vector: {} (shipped default)", vector_path.display());
    }
    // Defaults from the vector's sidecar (`select` writes best_layer and scope), else the middle
    // layer and all positions.
    let sidecar = steerscope::vector::read_sidecar(&vector_path);
    let layer_idx = a.layer.unwrap_or_else(|| {
        sidecar["best_layer"]
            .as_u64()
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(cfg.n_layers / 2)
    });
    cfg.check_layer(layer_idx)?;
    let scope = a.scope.unwrap_or_else(|| {
        sidecar["scope"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(Scope::All)
    });
    let vector = SteeringVector::load_for(&vector_path, &model)?;
    let direction = vector.for_layer(layer_idx)?;
    let prompt_ids = a.prompt.ids(&model)?;
    let mut streams = vec![
        StreamSpec {
            label: "unsteered".into(),
            steering: Steering::default(),
            seed: a.sampling.seed,
        },
        StreamSpec {
            label: if scope == Scope::All {
                format!("steered (layer {layer_idx}, strength {})", a.strength)
            } else {
                format!(
                    "steered (layer {layer_idx}, strength {}, {scope})",
                    a.strength
                )
            },
            steering: Steering::add(layer_idx, direction.clone(), a.strength, scope),
            seed: a.sampling.seed + 1,
        },
    ];
    if a.ablate {
        streams.push(StreamSpec {
            label: "ablated".into(),
            steering: Steering::ablate(direction),
            seed: a.sampling.seed + 2,
        });
    }
    let req = GenerateRequest {
        prompt_ids,
        streams,
        max_new_tokens: a.sampling.max_tokens,
        sampling: a.sampling.sampling(),
        trace: None,
    };
    let cancel = AtomicBool::new(false);
    let out = run_generation(&model, &req, &cancel, &mut |_| {})?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let cols: Vec<(&str, &str)> = out
        .streams
        .iter()
        .map(|s| (s.label.as_str(), s.text.trim()))
        .collect();
    print!("{}", side_by_side(&cols, terminal_width()));
    Ok(())
}

pub fn generate(a: &GenerateArgs) -> anyhow::Result<()> {
    let model = a.model.load()?;
    let prompt_ids = a.prompt.ids(&model)?;
    let req = GenerateRequest {
        prompt_ids,
        streams: vec![StreamSpec {
            label: "output".into(),
            steering: Steering::default(),
            seed: a.sampling.seed,
        }],
        max_new_tokens: a.sampling.max_tokens,
        sampling: a.sampling.sampling(),
        trace: None,
    };
    let cancel = AtomicBool::new(false);
    let mut stdout = std::io::stdout().lock();
    let mut write_err = None;
    run_generation(&model, &req, &cancel, &mut |ev: TokenEvent<'_>| {
        if let Err(e) = stdout
            .write_all(ev.text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            write_err.get_or_insert(e);
        }
    })?;
    writeln!(stdout)?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    Ok(())
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120)
        .clamp(40, 240)
}

/// Word-wrap `text` to `width` columns (in chars).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split(' ') {
            let needed =
                line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
            if needed > width && !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let mut word = word.to_owned();
            while word.chars().count() > width {
                let head: String = word.chars().take(width).collect();
                word = word.chars().skip(width).collect();
                lines.push(head);
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        lines.push(line);
    }
    lines
}

/// Columns of text with headers, separated by ` | `.
pub fn side_by_side(cols: &[(&str, &str)], total_width: usize) -> String {
    let n = cols.len().max(1);
    let width = (total_width.saturating_sub(3 * (n - 1)) / n).max(10);
    let wrapped: Vec<Vec<String>> = cols
        .iter()
        .map(|(label, text)| {
            let mut v = wrap(label, width);
            v.push("-".repeat(width));
            v.extend(wrap(text, width));
            v
        })
        .collect();
    let rows = wrapped.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = String::new();
    for r in 0..rows {
        let cells: Vec<String> = wrapped
            .iter()
            .map(|c| {
                let s = c.get(r).map_or("", String::as_str);
                format!("{s}{}", " ".repeat(width.saturating_sub(s.chars().count())))
            })
            .collect();
        // Drop the padding and separators after the last non-empty cell.
        out.push_str(cells.join(" | ").trim_end_matches([' ', '|']));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_wrap_and_align() {
        let s = side_by_side(&[("a", "one two three four"), ("b", "x")], 23);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "a          | b");
        assert_eq!(lines[1], "---------- | ----------");
        assert_eq!(lines[2], "one two    | x");
        assert_eq!(lines[3], "three four");
    }
}
