//! Per-layer, per-token summaries of a forward pass, on the host: L2 norms of every block hook
//! and projections onto unit directions. Small arrays, moved from the device once per call.

use candle_core::Tensor;

use crate::error::Result;
use crate::hooks::BlockHook;

/// Norms and projections at one block hook, for every layer.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HookSummary {
    /// `[layer][row][token]`, flattened.
    pub norms: Vec<f32>,
    /// `[layer][row][token][direction]`, flattened (empty without directions).
    pub projections: Vec<f32>,
}

/// Summaries of a forward pass (or of a generation: calls appended along tokens).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TraceRecord {
    pub n_layers: usize,
    pub batch: usize,
    pub n_tokens: usize,
    pub n_dirs: usize,
    /// Position of the first token summarized.
    pub first_pos: usize,
    /// Token embeddings: norms `[row][token]`, projections `[row][token][direction]`.
    pub embed: HookSummary,
    /// One summary per [`BlockHook`], in [`BlockHook::ALL`] order.
    pub hooks: Vec<HookSummary>,
}

fn flat(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl TraceRecord {
    pub(crate) fn from_device(
        embed: &(Tensor, Option<Tensor>),
        per_hook: &[Vec<(Tensor, Option<Tensor>)>; 5],
        n_dirs: usize,
        first_pos: usize,
    ) -> Result<Self> {
        let (batch, n_tokens) = embed.0.dims2()?;
        let mut hooks = Vec::with_capacity(5);
        for list in per_hook {
            let norms: Vec<Tensor> = list.iter().map(|(n, _)| n.clone()).collect();
            let projs: Vec<Tensor> = list.iter().filter_map(|(_, p)| p.clone()).collect();
            hooks.push(HookSummary {
                norms: flat(&Tensor::stack(&norms, 0)?)?,
                projections: if projs.is_empty() {
                    vec![]
                } else {
                    flat(&Tensor::stack(&projs, 0)?)?
                },
            });
        }
        Ok(Self {
            n_layers: per_hook[0].len(),
            batch,
            n_tokens,
            n_dirs,
            first_pos,
            embed: HookSummary {
                norms: flat(&embed.0)?,
                projections: match &embed.1 {
                    Some(p) => flat(p)?,
                    None => vec![],
                },
            },
            hooks,
        })
    }

    fn idx(&self, layer_idx: usize, row: usize, token: usize) -> usize {
        (layer_idx * self.batch + row) * self.n_tokens + token
    }

    /// L2 norm at `hook` of `layer_idx`, batch row `row`, token `token` (0 = first summarized).
    #[must_use]
    pub fn norm(&self, hook: BlockHook, layer_idx: usize, row: usize, token: usize) -> f32 {
        self.hooks[hook.index()].norms[self.idx(layer_idx, row, token)]
    }

    /// Projection onto unit direction `dir` at `hook` of `layer_idx`.
    #[must_use]
    pub fn projection(
        &self,
        hook: BlockHook,
        layer_idx: usize,
        row: usize,
        token: usize,
        dir: usize,
    ) -> f32 {
        self.hooks[hook.index()].projections[self.idx(layer_idx, row, token) * self.n_dirs + dir]
    }

    /// Projection of the token embedding onto direction `dir`.
    #[must_use]
    pub fn embed_projection(&self, row: usize, token: usize, dir: usize) -> f32 {
        self.embed.projections[(row * self.n_tokens + token) * self.n_dirs + dir]
    }

    /// Append the tokens of a later call (same batch, layers and directions).
    pub fn append_tokens(&mut self, later: &Self) {
        let cat = |a: &[f32], b: &[f32], outer: usize, inner_a: usize, inner_b: usize| {
            let mut out = Vec::with_capacity(a.len() + b.len());
            for o in 0..outer {
                out.extend_from_slice(&a[o * inner_a..(o + 1) * inner_a]);
                out.extend_from_slice(&b[o * inner_b..(o + 1) * inner_b]);
            }
            out
        };
        let (ta, tb, k) = (self.n_tokens, later.n_tokens, self.n_dirs);
        let rows = self.batch;
        self.embed.norms = cat(&self.embed.norms, &later.embed.norms, rows, ta, tb);
        if k > 0 {
            self.embed.projections = cat(
                &self.embed.projections,
                &later.embed.projections,
                rows,
                ta * k,
                tb * k,
            );
        }
        let outer = self.n_layers * rows;
        for (mine, theirs) in self.hooks.iter_mut().zip(&later.hooks) {
            mine.norms = cat(&mine.norms, &theirs.norms, outer, ta, tb);
            if k > 0 {
                mine.projections = cat(
                    &mine.projections,
                    &theirs.projections,
                    outer,
                    ta * k,
                    tb * k,
                );
            }
        }
        self.n_tokens += tb;
    }
}
