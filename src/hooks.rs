//! Hook points, named as TransformerLens names them, and what can be done at them: summaries
//! (norms and projections), full captures, and interventions.
//!
//! Layer convention: "steering at layer `l`" acts on `blocks.{l}.hook_resid_post`, the output
//! of block `l` (which is also `blocks.{l+1}.hook_resid_pre`).

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;

use crate::error::{Error, Result};

/// The hook sites inside one transformer block, in the order the forward visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockHook {
    /// Input of the block: the residual stream before attention.
    ResidPre,
    /// Output of the attention sublayer (after `o_proj`), what it adds to the residual.
    AttnOut,
    /// Residual after attention was added, before the MLP.
    ResidMid,
    /// Output of the MLP sublayer (after `down_proj`).
    MlpOut,
    /// Output of the block: the residual after the MLP was added.
    ResidPost,
}

impl BlockHook {
    pub const ALL: [Self; 5] = [
        Self::ResidPre,
        Self::AttnOut,
        Self::ResidMid,
        Self::MlpOut,
        Self::ResidPost,
    ];

    /// The TransformerLens suffix (`hook_resid_pre`, ...).
    #[must_use]
    pub fn suffix(self) -> &'static str {
        match self {
            Self::ResidPre => "hook_resid_pre",
            Self::AttnOut => "hook_attn_out",
            Self::ResidMid => "hook_resid_mid",
            Self::MlpOut => "hook_mlp_out",
            Self::ResidPost => "hook_resid_post",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A named point in the forward pass where activations can be read or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// `hook_embed`: token embeddings (equal to `blocks.0.hook_resid_pre`).
    Embed,
    /// `blocks.{layer_idx}.{hook}`.
    Block { layer_idx: usize, hook: BlockHook },
    /// `ln_final.hook_normalized`: the final RMS-normed residual, the input of the unembedding.
    FinalNorm,
}

impl HookPoint {
    #[must_use]
    pub fn block(layer_idx: usize, hook: BlockHook) -> Self {
        Self::Block { layer_idx, hook }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embed => f.write_str("hook_embed"),
            Self::Block { layer_idx, hook } => write!(f, "blocks.{layer_idx}.{}", hook.suffix()),
            Self::FinalNorm => f.write_str("ln_final.hook_normalized"),
        }
    }
}

impl FromStr for HookPoint {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let unknown = || Error::UnknownHook {
            name: name.to_owned(),
        };
        match name {
            "hook_embed" => return Ok(Self::Embed),
            "ln_final.hook_normalized" => return Ok(Self::FinalNorm),
            _ => {}
        }
        let rest = name.strip_prefix("blocks.").ok_or_else(unknown)?;
        let (idx, suffix) = rest.split_once('.').ok_or_else(unknown)?;
        let layer_idx: usize = idx.parse().map_err(|_| unknown())?;
        let hook = BlockHook::ALL
            .into_iter()
            .find(|h| h.suffix() == suffix)
            .ok_or_else(unknown)?;
        Ok(Self::Block { layer_idx, hook })
    }
}

/// Which positions an addition applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every position, prompt and generated.
    #[default]
    All,
    /// Prompt positions only.
    Prompt,
    /// Generated positions only.
    Generated,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::All => "all",
            Self::Prompt => "prompt",
            Self::Generated => "generated",
        })
    }
}

impl FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "all" => Ok(Self::All),
            "prompt" => Ok(Self::Prompt),
            "generated" => Ok(Self::Generated),
            _ => Err(Error::invalid(
                "scope",
                format!("`{s}` (expected all, prompt or generated)"),
            )),
        }
    }
}

/// Add `strength * vector` to `blocks.{layer_idx}.hook_resid_post`.
#[derive(Debug, Clone)]
pub struct Addition {
    pub layer_idx: usize,
    /// Shape `[hidden_size]`, used as given (not normalized).
    pub vector: Tensor,
    pub strength: f64,
    pub scope: Scope,
}

/// The sublayer whose output a component ablation replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Attn,
    Mlp,
}

/// Replace one layer's attention or MLP output.
#[derive(Debug, Clone)]
pub struct ComponentAblation {
    pub layer_idx: usize,
    pub component: Component,
    /// `None`: zero-ablation. `Some(mean)` (shape `[hidden_size]`): mean-ablation, the output
    /// replaced by a mean activation (for example one computed from captures over a prompt set).
    pub mean: Option<Tensor>,
}

/// Everything one stream (one batch row) changes in the forward pass.
#[derive(Debug, Clone, Default)]
pub struct Steering {
    pub additions: Vec<Addition>,
    /// A direction (shape `[hidden_size]`, normalized on use) projected out of the embedding and
    /// out of every attention and MLP output, hence out of the residual at every layer (Arditi et
    /// al. 2024, directional ablation).
    pub ablate_direction: Option<Tensor>,
    pub component_ablations: Vec<ComponentAblation>,
}

impl Steering {
    /// Add `strength * vector` at `blocks.{layer_idx}.hook_resid_post`, nothing else.
    #[must_use]
    pub fn add(layer_idx: usize, vector: Tensor, strength: f64, scope: Scope) -> Self {
        Self {
            additions: vec![Addition {
                layer_idx,
                vector,
                strength,
                scope,
            }],
            ..Self::default()
        }
    }

    /// Project `direction` out everywhere (directional ablation), nothing else.
    #[must_use]
    pub fn ablate(direction: Tensor) -> Self {
        Self {
            ablate_direction: Some(direction),
            ..Self::default()
        }
    }

    /// True when this steering changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.additions.is_empty()
            && self.ablate_direction.is_none()
            && self.component_ablations.is_empty()
    }

    /// Whether it changes activations at prompt positions (so a KV cache built under other
    /// steering must not be reused).
    #[must_use]
    pub fn touches_prompt(&self) -> bool {
        self.ablate_direction.is_some()
            || !self.component_ablations.is_empty()
            || self.additions.iter().any(|a| a.scope != Scope::Generated)
    }
}

/// What to record during a forward pass.
#[derive(Debug, Clone, Default)]
pub struct TraceSpec {
    /// Directions to project every hooked activation onto, each shape `[hidden_size]`;
    /// normalized to unit length when the trace is prepared.
    pub directions: Vec<Tensor>,
    /// Record per-layer, per-token norms and projections at every block hook.
    pub summaries: bool,
    /// Hook points whose full activations are returned (for vector extraction).
    pub capture: Vec<HookPoint>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_names_round_trip() {
        for name in [
            "hook_embed",
            "blocks.0.hook_resid_pre",
            "blocks.12.hook_attn_out",
            "blocks.3.hook_resid_mid",
            "blocks.7.hook_mlp_out",
            "blocks.29.hook_resid_post",
            "ln_final.hook_normalized",
        ] {
            let hook: HookPoint = name.parse().unwrap();
            assert_eq!(hook.to_string(), name);
        }
        assert_eq!(
            "blocks.4.hook_mlp_out".parse::<HookPoint>().unwrap(),
            HookPoint::block(4, BlockHook::MlpOut)
        );
    }

    #[test]
    fn unknown_hook_names_are_refused_with_the_name() {
        for bad in [
            "blocks.x.hook_resid_pre",
            "blocks.3.hook_resid",
            "hook_resid_pre",
            "blocks.3",
            "",
        ] {
            let err = bad.parse::<HookPoint>().unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{bad}`")),
                "{err} should name {bad}"
            );
        }
    }
}
