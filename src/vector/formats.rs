//! Reading and writing steering-vector files: safetensors (with string metadata), GGUF control
//! vectors as llama.cpp and repeng use them, NumPy `.npy` and PyTorch `.pt` tensors.
//!
//! # Layer numbering in GGUF control vectors
//! llama.cpp (`llama_control_vector_load` in `common/`, `llama_adapter_cvec::apply`) reads tensors
//! `direction.N` with `N >= 1` and adds `direction.N` to the output of block `N` (0-based; its
//! `build_cvec(cur, il)` runs at the end of layer `il`). repeng's `export_gguf` writes its
//! layer ids the same way. That is exactly steerscope's layer `N`
//! (`blocks.N.hook_resid_post`), so the numbers carry over unchanged; layer 0 cannot be
//! steered through llama.cpp (`direction.0` is rejected there), so it is not written.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Named tensors and string metadata read from a file.
pub(crate) struct RawVector {
    pub tensors: Vec<(String, Tensor)>,
    pub metadata: BTreeMap<String, String>,
}

pub(crate) fn read_safetensors(path: &Path, device: &Device) -> Result<RawVector> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        Error::bad_file(
            path,
            format!("not a readable safetensors steering vector: {e}"),
        )
    })?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| {
        Error::bad_file(
            path,
            format!("not a readable safetensors steering vector: {e}"),
        )
    })?;
    Ok(RawVector {
        tensors: tensors.into_iter().collect(),
        metadata,
    })
}

/// `general.architecture` of a GGUF file (header only); `None` when it cannot be read.
pub(crate) fn gguf_architecture(path: &Path) -> Option<String> {
    let (content, _) = crate::model::weights::read_gguf(path).ok()?;
    content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
}

/// A GGUF control vector: `general.architecture = controlvector`, tensors `direction.N`.
pub(crate) fn read_gguf(path: &Path, device: &Device) -> Result<RawVector> {
    let (content, mut reader) = crate::model::weights::read_gguf(path)?;
    let md = &content.metadata;
    let arch = md
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned();
    if arch.as_deref() != Some("controlvector") {
        return Err(Error::bad_file(
            path,
            format!(
                "general.architecture is {} (expected `controlvector`, the GGUF control-vector format llama.cpp reads)",
                arch.map_or_else(|| "missing".to_owned(), |a| format!("`{a}`"))
            ),
        ));
    }
    let mut metadata = BTreeMap::new();
    if let Some(hint) = md
        .get("controlvector.model_hint")
        .and_then(|v| v.to_string().ok())
    {
        metadata.insert("model_hint".to_owned(), hint.clone());
    }
    let layer_count = md
        .get("controlvector.layer_count")
        .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)));
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let Some(n) = name
            .strip_prefix("direction.")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return Err(Error::bad_file(
                path,
                format!("tensor `{name}` is not named `direction.N`"),
            ));
        };
        if n == 0 {
            return Err(Error::bad_file(
                path,
                "tensor `direction.0`: control-vector layers start at 1 (llama.cpp rejects 0)",
            ));
        }
        let q = content
            .tensor(&mut reader, name, device)
            .map_err(|e| Error::bad_file(path, format!("reading tensor `{name}`: {e}")))?;
        tensors.push((name.clone(), q.dequantize(device)?));
    }
    if let Some(count) = layer_count {
        if count != tensors.len() as u64 {
            return Err(Error::bad_file(
                path,
                format!(
                    "controlvector.layer_count is {count} but the file holds {} direction tensors (missing layers)",
                    tensors.len()
                ),
            ));
        }
    }
    metadata.insert("format".to_owned(), "gguf controlvector".to_owned());
    Ok(RawVector { tensors, metadata })
}

/// A `.npy` array: `[hidden]` (one direction) or `[layers, hidden]`.
pub(crate) fn read_npy(path: &Path, device: &Device) -> Result<RawVector> {
    let t = Tensor::read_npy(path)
        .map_err(|e| Error::bad_file(path, format!("not a readable .npy array: {e}")))?
        .to_device(device)?;
    Ok(RawVector {
        tensors: vec![("direction".to_owned(), t)],
        metadata: BTreeMap::from([("format".to_owned(), "npy".to_owned())]),
    })
}

/// A PyTorch `.pt` / `.pth` file holding one tensor (as the refusal-direction repository saves
/// `direction.pt` with `torch.save(tensor)`) or a dict of tensors; read with candle's pickle
/// machinery, no Python needed.
pub(crate) fn read_pt(path: &Path, device: &Device) -> Result<RawVector> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::bad_file(path, format!("not a readable PyTorch tensor file: {e}"))
    };
    let mut tensors = candle_core::pickle::read_all(path).map_err(|e| bad(&e))?;
    if tensors.is_empty() {
        tensors = vec![(
            "direction".to_owned(),
            read_bare_pt_tensor(path).map_err(|e| bad(&e))?,
        )];
    }
    let tensors = tensors
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(device)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(RawVector {
        tensors,
        metadata: BTreeMap::from([("format".to_owned(), "pt".to_owned())]),
    })
}

/// The tensor pickled at the root of a `torch.save` zip (candle's reader expects a dict).
fn read_bare_pt_tensor(path: &Path) -> std::result::Result<Tensor, String> {
    use candle_core::pickle::{Object, Stack};
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    let pkl = zip
        .file_names()
        .filter_map(std::result::Result::ok)
        .find(|n| n.ends_with("data.pkl"))
        .map(std::borrow::Cow::into_owned)
        .ok_or("no data.pkl inside (expected a torch.save zip)")?;
    let dir_name = std::path::PathBuf::from(pkl.trim_end_matches(".pkl"));
    let mut stack = Stack::empty();
    {
        let reader = zip.by_name(&pkl).map_err(|e| e.to_string())?;
        stack
            .read_loop(&mut std::io::BufReader::new(reader))
            .map_err(|e| e.to_string())?;
    }
    let obj = stack.finalize().map_err(|e| e.to_string())?;
    let info = obj
        .into_tensor_info(Object::Unicode("direction".to_owned()), &dir_name)
        .map_err(|e| e.to_string())?
        .ok_or("the pickled object is neither a tensor nor a dict of tensors")?;
    if !info.layout.is_contiguous() {
        return Err(format!("tensor layout {:?} is not contiguous", info.layout));
    }
    let mut bytes = Vec::new();
    zip.by_name(&info.path)
        .map_err(|e| e.to_string())?
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let size = info.dtype.size_in_bytes();
    let start = info.layout.start_offset() * size;
    let n = info.layout.shape().elem_count();
    let data = bytes
        .get(start..start + n * size)
        .ok_or("tensor data is truncated")?;
    Tensor::from_raw_buffer(data, info.dtype, info.layout.shape().dims(), &Device::Cpu)
        .map_err(|e| e.to_string())
}

/// Write per-layer directions as safetensors `direction.{l}` tensors (f32) with string metadata.
pub(crate) fn write_safetensors(
    path: &Path,
    directions: &[(usize, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(directions.len());
    for (l, t) in directions {
        let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        data.push((format!("direction.{l}"), vec![v.len()], bytes));
    }
    let views = data
        .iter()
        .map(|(n, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.as_str(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::bad_file(path, format!("cannot write: {e}")))?;
    let meta: std::collections::HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    safetensors::serialize_to_file(views, Some(meta), path)
        .map_err(|e| Error::bad_file(path, format!("cannot write: {e}")))
}

/// Write a GGUF control vector llama.cpp loads with `--control-vector` (layers `>= 1` only;
/// see the module docs for the numbering). Returns the layers written.
pub(crate) fn write_gguf(
    path: &Path,
    directions: &[(usize, Tensor)],
    model_hint: &str,
) -> Result<Vec<usize>> {
    let mut tensors = Vec::new();
    for (l, t) in directions.iter().filter(|(l, _)| *l >= 1) {
        // A fresh buffer: `QTensor::quantize` reads the whole storage of a view.
        let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let n = v.len();
        let t = Tensor::from_vec(v, n, &Device::Cpu)?;
        tensors.push((
            format!("direction.{l}"),
            *l,
            QTensor::quantize(&t, GgmlDType::F32)?,
        ));
    }
    if tensors.is_empty() {
        return Err(Error::invalid(
            "vector",
            "no layer >= 1 to write (llama.cpp control vectors cannot steer layer 0)",
        ));
    }
    let arch = gguf_file::Value::String("controlvector".to_owned());
    let hint = gguf_file::Value::String(model_hint.to_owned());
    let count = gguf_file::Value::U32(tensors.len() as u32);
    let metadata: Vec<(&str, &gguf_file::Value)> = vec![
        ("general.architecture", &arch),
        ("controlvector.model_hint", &hint),
        ("controlvector.layer_count", &count),
    ];
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, _, q)| (n.as_str(), q)).collect();
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    gguf_file::write(&mut file, &metadata, &refs)
        .map_err(|e| Error::bad_file(path, format!("cannot write: {e}")))?;
    Ok(tensors.iter().map(|(_, l, _)| *l).collect())
}
