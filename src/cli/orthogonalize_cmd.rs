//! `steerscope orthogonalize`: a checkpoint with a direction projected out of its weights.

use std::path::PathBuf;

use candle_core::Device;
use clap::Args;

use steerscope::model::{Model, ModelSource};
use steerscope::steer::orthogonalize::{orthogonalize_gguf, orthogonalize_hf};
use steerscope::vector::SteeringVector;

#[derive(Args, Debug)]
pub struct OrthogonalizeArgs {
    /// The model to edit: an HF folder or a .gguf file (HF cache ids resolve as for --model).
    #[arg(long, short = 'm')]
    pub model: String,
    /// The direction's vector file.
    #[arg(long, short = 'v')]
    pub vector: PathBuf,
    /// Which layer's direction to project out (everywhere).
    #[arg(long, short = 'l')]
    pub layer: usize,
    /// Output: a folder for an HF model, a .gguf path for a GGUF model.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

pub fn orthogonalize(a: &OrthogonalizeArgs) -> anyhow::Result<()> {
    let model = Model::load(&a.model, &Device::Cpu)?;
    model.cfg().check_layer(a.layer)?;
    let v = SteeringVector::load_for(&a.vector, &model)?;
    let d = v.for_layer(a.layer)?;
    let edited = match steerscope::model::source::resolve(&a.model)? {
        ModelSource::Gguf(path) => orthogonalize_gguf(&path, &a.out, &d)?,
        ModelSource::HfFolder(dir) => orthogonalize_hf(&dir, &a.out, &d)?,
    };
    println!(
        "wrote {} ({edited} weight matrices orthogonalized to layer {}'s direction)",
        a.out.display(),
        a.layer
    );
    Ok(())
}
