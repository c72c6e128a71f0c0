"""Helpers for tests/extract.rs: write and read steering-vector files with the Python tools
researchers use, so steerscope's files are checked against them, not against itself.

  write-repeng OUT N_LAYERS HIDDEN   a GGUF control vector the way repeng's export_gguf writes it
                                     (gguf.GGUFWriter, arch "controlvector", direction.1..N)
  read-gguf PATH                     print {"arch", "model_hint", "layer_count", "directions"} as JSON
  write-pt OUT HIDDEN                a torch.save()-format file holding one float32 tensor,
                                     written without torch (zip + pickle, as torch lays it out)
Values are deterministic: direction.l[i] = l + i / 1000.
"""
import json
import pickle
import struct
import sys
import types
import zipfile


def values(layer, hidden):
    return [layer + i / 1000 for i in range(hidden)]


def write_repeng(out, n_layers, hidden):
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(out, "controlvector")
    writer.add_string("controlvector.model_hint", "llama")
    writer.add_uint32("controlvector.layer_count", n_layers)
    for layer in range(1, n_layers + 1):
        writer.add_tensor(f"direction.{layer}", np.array(values(layer, hidden), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def read_gguf(path):
    import gguf

    reader = gguf.GGUFReader(path)

    def field(name):
        f = reader.fields.get(name)
        if f is None:
            return None
        v = f.parts[f.data[0]]
        return bytes(v).decode() if f.types and f.types[0] == gguf.GGUFValueType.STRING else int(v[0])

    out = {
        "arch": field("general.architecture"),
        "model_hint": field("controlvector.model_hint"),
        "layer_count": field("controlvector.layer_count"),
        "directions": {t.name: [float(x) for x in t.data.reshape(-1)] for t in reader.tensors},
    }
    print(json.dumps(out))


def write_pt(out, hidden):
    # Fake just enough of torch for pickle to name torch._utils._rebuild_tensor_v2 and
    # torch.FloatStorage, as torch.save does.
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    torch.FloatStorage = FloatStorage

    def _rebuild_tensor_v2(*args):
        raise RuntimeError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils

    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            import collections

            return (_rebuild_tensor_v2, (Storage(), 0, (hidden,), (1,), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", FloatStorage, "0", "cpu", hidden)
            return None

    import io

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(Tensor())
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("direction/data.pkl", buf.getvalue())
        z.writestr("direction/byteorder", "little")
        z.writestr("direction/data/0", struct.pack(f"<{hidden}f", *values(7, hidden)))
        z.writestr("direction/version", "3\n")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "write-repeng":
        write_repeng(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "read-gguf":
        read_gguf(sys.argv[2])
    elif cmd == "write-pt":
        write_pt(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"unknown command {cmd}")
