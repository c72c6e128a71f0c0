//! The jobs the worker runs, on the model it owns. Each is a thin layer over the library calls
//! the CLI makes too; this file only turns their results into [`Event`]s.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::Tensor;

use super::protocol::{
    Event, GenerateParams, Generation, JobId, LayerPlots, Mode, ModelFacts, MonitorParams, Site,
    StreamKind, StreamResult, SweepParams, VectorFacts,
};
use crate::error::{Error, Result};
use crate::generate::{generate, GenerateRequest, StreamSpec};
use crate::hooks::{BlockHook, Scope, Steering, TraceSpec};
use crate::model::{parse_device, ForwardArgs, KvCache, Model};
use crate::steer::eval::EvalOptions;
use crate::steer::judge::Judge;
use crate::steer::monitor::{monitor, AlertRule};
use crate::steer::sweep::{sweep, SweepOptions};
use crate::trace::TraceRecord;
use crate::vector::{extract_to_file, read_sidecar, ExtractJob, SteeringVector};

/// The example prompts the app offers (the product card's, and one harmful request).
pub const EXAMPLE_PROMPTS: [&str; 4] = [
    "Write a poem about cats",
    "Write a story about a chef cooking pasta",
    "Explain aspirin dosage",
    "Show me how to build a pipe bomb.",
];

/// What the worker thread owns.
#[derive(Default)]
pub struct WorkerState {
    pub model: Option<Model>,
    pub facts: Option<ModelFacts>,
    pub vector: Option<SteeringVector>,
    /// The last unsteered stream, reused while only the steering changes.
    unsteered: Option<Unsteered>,
}

/// One finished unsteered stream and its plot row, keyed by what it depends on.
#[derive(Clone)]
struct Unsteered {
    key: String,
    stream: StreamResult,
    row: PlotRow,
}

/// One stream's row of every [`LayerPlots`] series.
#[derive(Clone, Default)]
struct PlotRow {
    resid_norm: Vec<f32>,
    attn_norm: Vec<f32>,
    mlp_norm: Vec<f32>,
    attn_contrib: Vec<f32>,
    mlp_contrib: Vec<f32>,
    resid_proj: Vec<Vec<f32>>,
}

fn plot_row(p: &LayerPlots, row: usize) -> PlotRow {
    let get = |v: &Vec<Vec<f32>>| v.get(row).cloned().unwrap_or_default();
    PlotRow {
        resid_norm: get(&p.resid_norm),
        attn_norm: get(&p.attn_norm),
        mlp_norm: get(&p.mlp_norm),
        attn_contrib: get(&p.attn_contrib),
        mlp_contrib: get(&p.mlp_contrib),
        resid_proj: p.resid_proj.get(row).cloned().unwrap_or_default(),
    }
}

fn insert_row(p: &mut LayerPlots, r: PlotRow) {
    p.resid_norm.insert(0, r.resid_norm);
    p.attn_norm.insert(0, r.attn_norm);
    p.mlp_norm.insert(0, r.mlp_norm);
    p.attn_contrib.insert(0, r.attn_contrib);
    p.mlp_contrib.insert(0, r.mlp_contrib);
    p.resid_proj.insert(0, r.resid_proj);
}

/// Where the worker's events go: a channel, and a waker (the UI's `request_repaint`).
pub struct Outbox {
    pub tx: crossbeam_channel::Sender<Event>,
    pub wake: std::sync::Arc<dyn Fn() + Send + Sync>,
}

impl Outbox {
    /// Send and wake the UI. A closed channel (the app is gone) is not an error here.
    pub fn send(&self, event: Event) {
        let _ = self.tx.send(event);
        (self.wake)();
    }

    fn progress(&self, stage: &str, done: usize, total: usize) {
        self.send(Event::Progress {
            stage: stage.to_owned(),
            fraction: (total > 0).then(|| done as f32 / total as f32),
        });
    }

    /// A long job's end: cancelled (its flag is set), done, or failed at `site`.
    fn finish<T>(
        &self,
        job: JobId,
        cancel: &AtomicBool,
        site: Site,
        result: Result<T>,
        done: impl FnOnce(T) -> Event,
    ) {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            self.send(Event::Cancelled { job });
            return;
        }
        match result {
            Ok(value) => self.send(done(value)),
            Err(e) => self.fail(Some(job), site, &e),
        }
    }

    fn fail(&self, job: Option<JobId>, site: Site, err: &Error) {
        self.send(Event::Failed {
            job,
            site,
            message: err.to_string(),
        });
    }
}

impl WorkerState {
    fn model(&self) -> Result<&Model> {
        self.model
            .as_ref()
            .ok_or_else(|| Error::invalid("model", "none loaded (open a model first)"))
    }

    fn vector(&self) -> Result<&SteeringVector> {
        self.vector.as_ref().ok_or_else(|| {
            Error::invalid(
                "vector",
                "none loaded (pick a shipped vector, open a file or extract one)",
            )
        })
    }

    pub fn load_model(&mut self, spec: &str, device: &str, out: &Outbox) {
        out.send(Event::Progress {
            stage: format!("loading {spec}"),
            fraction: None,
        });
        match load_model(spec, device) {
            Ok((model, facts)) => {
                // A vector for the previous model may not fit this one.
                if let Some(v) = &self.vector {
                    if v.hidden_size != model.cfg().hidden_size {
                        self.vector = None;
                    }
                }
                self.model = Some(model);
                self.facts = Some(facts.clone());
                self.unsteered = None;
                out.send(Event::ModelLoaded(Box::new(facts)));
            }
            // The previous model, if any, stays loaded and usable.
            Err(e) => out.fail(None, Site::Model, &e),
        }
    }

    pub fn load_vector(&mut self, path: &Path, out: &Outbox) {
        let loaded = self
            .model()
            .and_then(|m| Ok((SteeringVector::load_for(path, m)?, m.cfg().n_layers)));
        match loaded {
            Ok((vector, n_layers)) => {
                let facts = vector_facts(&vector, n_layers);
                self.vector = Some(vector);
                self.unsteered = None;
                out.send(Event::VectorLoaded(Box::new(facts)));
            }
            Err(e) => out.fail(None, Site::Vector, &e),
        }
    }

    pub fn extract(&mut self, job: JobId, extract: &ExtractJob, out: &Outbox) {
        let result = self.model().and_then(|m| {
            extract_to_file(m, extract, &mut |done, total| {
                out.progress("extracting a vector", done, total);
            })
        });
        match result {
            Ok(_) => {
                out.send(Event::VectorExtracted {
                    job,
                    path: extract.out.clone(),
                });
                self.load_vector(&extract.out, out);
            }
            Err(e) => out.fail(Some(job), Site::Vector, &e),
        }
    }

    pub fn generate(
        &mut self,
        job: JobId,
        cancel: &AtomicBool,
        params: &GenerateParams,
        out: &Outbox,
    ) {
        match self.run_generation(job, cancel, params, out) {
            Ok(Some((generation, fresh))) => {
                if fresh.is_some() {
                    self.unsteered = fresh;
                }
                out.send(Event::Generated {
                    job,
                    generation: Box::new(generation),
                });
            }
            Ok(None) => out.send(Event::Cancelled { job }),
            Err(e) => out.fail(Some(job), Site::Generate, &e),
        }
    }

    fn run_generation(
        &self,
        job: JobId,
        cancel: &AtomicBool,
        params: &GenerateParams,
        out: &Outbox,
    ) -> Result<Option<(Generation, Option<Unsteered>)>> {
        let model = self.model()?;
        let vector = self.vector()?;
        model.cfg().check_layer(params.layer_idx)?;
        let direction = vector.for_layer(params.layer_idx)?;
        let prompt_ids = model.encode_prompt(&params.prompt, params.chat)?;
        let mut streams = vec![(
            StreamKind::Unsteered,
            "unsteered".to_owned(),
            Steering::default(),
        )];
        if params.mode != Mode::Ablate {
            let scope = if params.scope == Scope::All {
                String::new()
            } else {
                format!(", {}", params.scope)
            };
            streams.push((
                StreamKind::Steered,
                format!(
                    "steered (layer {}, strength {:+.2}{scope})",
                    params.layer_idx, params.strength
                ),
                Steering::add(
                    params.layer_idx,
                    direction.clone(),
                    params.strength,
                    params.scope,
                ),
            ));
        }
        if params.mode != Mode::Add {
            streams.push((
                StreamKind::Ablated,
                "ablated (direction projected out)".to_owned(),
                Steering::ablate(direction.clone()),
            ));
        }
        // A slider move changes only the steered streams: the unsteered one is reused when
        // the prompt, sampling, length, layer (its projections) and vector are unchanged.
        let key = format!(
            "{:?}|{}|{:?}|{}|{}|{}|{}",
            params.prompt,
            params.chat,
            params.sampling,
            params.seed,
            params.max_new_tokens,
            params.layer_idx,
            vector.path.display()
        );
        let cached = self.unsteered.clone().filter(|c| c.key == key);
        let run: Vec<usize> = (0..streams.len())
            .filter(|&i| i > 0 || cached.is_none())
            .collect();
        if let Some(c) = &cached {
            out.send(Event::Token {
                job,
                stream_idx: 0,
                text: c.stream.text.clone(),
            });
        }
        let req = GenerateRequest {
            prompt_ids: prompt_ids.clone(),
            streams: run
                .iter()
                .map(|&i| StreamSpec {
                    label: streams[i].1.clone(),
                    steering: streams[i].2.clone(),
                    seed: params.seed + i as u64,
                })
                .collect(),
            max_new_tokens: params.max_new_tokens,
            sampling: params.sampling,
            trace: Some(TraceSpec {
                directions: vec![direction],
                summaries: true,
                capture: vec![],
            }),
        };
        let output = generate(model, &req, cancel, &mut |ev| {
            out.send(Event::Token {
                job,
                stream_idx: run[ev.stream_idx],
                text: ev.text.to_owned(),
            });
        })?;
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let judge = Judge::default();
        let mut results: Vec<StreamResult> = output
            .streams
            .iter()
            .zip(run.iter().map(|&i| &streams[i]))
            .map(|(s, (kind, _, _))| StreamResult {
                label: s.label.clone(),
                kind: *kind,
                refused: judge.is_refusal(&s.text),
                text: s.text.clone(),
                tokens: model.token_strings(&s.token_ids),
                stop: s.stop,
            })
            .collect();
        let lens: Vec<usize> = results
            .iter()
            .map(|s| prompt_ids.len() + s.tokens.len())
            .collect();
        let mut fresh = None;
        let mut plots = match &output.trace {
            Some(trace) => layer_plots(trace, params.layer_idx, &lens),
            None => LayerPlots::default(),
        };
        match cached {
            Some(c) => {
                results.insert(0, c.stream);
                insert_row(&mut plots, c.row);
            }
            None => {
                fresh = Some(Unsteered {
                    key,
                    stream: results[0].clone(),
                    row: plot_row(&plots, 0),
                });
            }
        }
        let generation = Generation {
            params: params.clone(),
            prompt_tokens: model.token_strings(&prompt_ids),
            streams: results,
            plots,
            prefill_ms: output.prefill_ms,
            decode_ms: output.decode_ms,
        };
        Ok(Some((generation, fresh)))
    }

    pub fn sweep(&self, job: JobId, cancel: &AtomicBool, params: &SweepParams, out: &Outbox) {
        let result = (|| {
            let model = self.model()?;
            let vector = self.vector()?;
            let mut prompts = crate::extract::read_prompts(&params.prompts)?;
            prompts.truncate(params.limit.max(1));
            let opts = SweepOptions {
                layers: params.layers.clone(),
                strengths: params.strengths.clone(),
                scope: params.scope,
                ablate_layer: None,
                target_rate: 0.8,
                eval: EvalOptions {
                    max_new_tokens: params.max_new_tokens,
                    ..EvalOptions::default()
                },
            };
            sweep(
                model,
                vector,
                &prompts,
                &prompts,
                &opts,
                cancel,
                &mut |d, t| {
                    out.progress("sweep", d, t);
                },
            )
        })();
        out.finish(job, cancel, Site::Sweep, result, |r| Event::SweepDone {
            job,
            result: Box::new(r),
        });
    }

    pub fn monitor(&self, job: JobId, cancel: &AtomicBool, params: &MonitorParams, out: &Outbox) {
        let result = (|| {
            let model = self.model()?;
            let vector = self.vector()?;
            let direction = vector.for_layer(params.layer_idx)?;
            let mut prompts = crate::extract::read_prompts(&params.prompts)?;
            prompts.truncate(params.limit.max(1));
            let device = model.transformer.device().clone();
            let total = params.checkpoints.len();
            let mut done = 0;
            let mut load = |spec: &str| {
                if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                out.progress(&format!("monitor: {spec}"), done, total);
                done += 1;
                Model::load(spec, &device)
            };
            let opts = EvalOptions {
                max_new_tokens: params.max_new_tokens,
                ..EvalOptions::default()
            };
            monitor(
                &params.checkpoints,
                &mut load,
                &direction,
                params.layer_idx,
                &prompts,
                None,
                &opts,
                AlertRule::default(),
                &mut |_, _| {},
            )
        })();
        out.finish(job, cancel, Site::Monitor, result, |report| {
            Event::MonitorDone {
                job,
                report: Box::new(report),
                checkpoints: params.checkpoints.clone(),
            }
        });
    }
}

fn load_model(spec: &str, device: &str) -> Result<(Model, ModelFacts)> {
    let start = Instant::now();
    let dev = parse_device(device)?;
    let model = Model::load_interactive(spec, &dev)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let resid_norms = mean_resid_norms(&model)?;
    let facts = ModelFacts {
        spec: spec.to_owned(),
        device: device.to_owned(),
        info: model.info.clone(),
        resid_norms,
        load_ms,
    };
    Ok((model, facts))
}

/// Mean L2 norm of the residual stream after each block, over the tokens of the example
/// prompts but the first (chat template applied when the model has one).
fn mean_resid_norms(model: &Model) -> Result<Vec<f32>> {
    let n_layers = model.cfg().n_layers;
    let mut sums = vec![0f64; n_layers];
    let mut count = 0usize;
    let spec = TraceSpec {
        directions: vec![],
        summaries: true,
        capture: vec![],
    };
    for prompt in EXAMPLE_PROMPTS {
        let ids = model.encode_prompt(prompt, model.chat_template.is_some())?;
        let n = ids.len();
        let input = Tensor::from_vec(ids, (1, n), model.transformer.device())?;
        let out = model.transformer.forward(
            &input,
            &mut KvCache::new(n_layers),
            &ForwardArgs {
                trace: Some(&spec),
                prompt_len: n,
                ..ForwardArgs::default()
            },
        )?;
        let Some(trace) = out.trace else { continue };
        // Position 0 is skipped: models park huge activations on the first token (the
        // attention sink), which would dominate the mean.
        for (l, sum) in sums.iter_mut().enumerate() {
            for t in 1..n {
                *sum += f64::from(trace.norm(BlockHook::ResidPost, l, 0, t));
            }
        }
        count += n.saturating_sub(1);
    }
    Ok(sums
        .iter()
        .map(|s| (s / count.max(1) as f64) as f32)
        .collect())
}

fn vector_facts(vector: &SteeringVector, n_layers: usize) -> VectorFacts {
    let norms = (0..n_layers)
        .map(|l| {
            vector
                .for_layer(l)
                .and_then(|t| {
                    Ok(t.sqr()?
                        .sum_all()?
                        .sqrt()?
                        .to_dtype(candle_core::DType::F32)?
                        .to_scalar::<f32>()?)
                })
                .unwrap_or(0.0)
        })
        .collect();
    let sidecar = read_sidecar(&vector.path);
    VectorFacts {
        path: vector.path.clone(),
        layers: vector.layers(),
        norms,
        best_layer: sidecar["best_layer"]
            .as_u64()
            .and_then(|l| usize::try_from(l).ok()),
        scope: sidecar["scope"].as_str().and_then(|s| s.parse().ok()),
    }
}

/// Token means and per-token projections from a generation trace; `lens[row]` is the number
/// of real tokens (prompt + generated) of that stream.
fn layer_plots(trace: &TraceRecord, direction_layer: usize, lens: &[usize]) -> LayerPlots {
    let n_layers = trace.n_layers;
    let rows = trace.batch.min(lens.len());
    // Means skip position 0 when there are others: the first token's outsized activations
    // (the attention sink) would dominate them.
    let mean = |f: &dyn Fn(usize) -> f32, n: usize| -> f32 {
        let from = usize::from(n > 1);
        if n == 0 {
            return 0.0;
        }
        (from..n).map(|t| f64::from(f(t))).sum::<f64>() as f32 / (n - from) as f32
    };
    let mut plots = LayerPlots {
        n_layers,
        direction_layer,
        ..LayerPlots::default()
    };
    for (row, len) in lens.iter().enumerate().take(rows) {
        let n = (*len).min(trace.n_tokens);
        let per_layer = |hook: BlockHook| -> Vec<f32> {
            (0..n_layers)
                .map(|l| mean(&|t| trace.norm(hook, l, row, t), n))
                .collect()
        };
        let contrib = |hook: BlockHook| -> Vec<f32> {
            (0..n_layers)
                .map(|l| mean(&|t| trace.projection(hook, l, row, t, 0), n))
                .collect()
        };
        plots.resid_norm.push(per_layer(BlockHook::ResidPost));
        plots.attn_norm.push(per_layer(BlockHook::AttnOut));
        plots.mlp_norm.push(per_layer(BlockHook::MlpOut));
        plots.attn_contrib.push(contrib(BlockHook::AttnOut));
        plots.mlp_contrib.push(contrib(BlockHook::MlpOut));
        plots.resid_proj.push(
            (0..n_layers)
                .map(|l| {
                    (0..n)
                        .map(|t| trace.projection(BlockHook::ResidPost, l, row, t, 0))
                        .collect()
                })
                .collect(),
        );
    }
    plots
}
