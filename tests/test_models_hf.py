"""The NNX ports against transformers' PyTorch models: loading, logits, export, PEFT."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from hf_fixtures import VOCAB, hf_logits, save_tiny
from lbw_jax.train.models import (PretrainedLoadError, LoRAConfig, apply_lora, load_pretrained,
                          save_adapter, save_pretrained)

FAMILIES = ["qwen2", "llama"]


def _ids(seed=0, shape=(2, 12)):
    return np.random.default_rng(seed).integers(0, VOCAB, shape)


@pytest.mark.parametrize("scan", [False, True], ids=["per_layer", "scan_layers"])
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers(family, scan, tmp_path):
    hf = save_tiny(family, tmp_path)
    model = load_pretrained(tmp_path, scan_layers=scan)
    ids = _ids()
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(ids))), hf_logits(hf, ids),
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_with_padding(family, tmp_path):
    hf = save_tiny(family, tmp_path)
    model = load_pretrained(tmp_path)
    ids = _ids(1)
    mask = np.ones_like(ids)
    mask[0, 8:] = 0          # right padding in the first row
    got = np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    want = hf_logits(hf, ids, attention_mask=mask)
    valid = mask.astype(bool)
    np.testing.assert_allclose(got[valid], want[valid], atol=1e-4, rtol=0)


@pytest.mark.parametrize("scan", [False, True], ids=["per_layer", "scan_layers"])
@pytest.mark.parametrize("family", FAMILIES)
def test_export_round_trip_loads_in_transformers(family, scan, tmp_path):
    import transformers

    save_tiny(family, tmp_path / "in")
    model = load_pretrained(tmp_path / "in", scan_layers=scan)
    save_pretrained(model, tmp_path / "out")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = _ids(2)
    np.testing.assert_allclose(hf_logits(reloaded, ids), np.asarray(model(jnp.asarray(ids))),
                               atol=1e-4, rtol=0)


def test_bf16_compute_with_fp32_params(tmp_path):
    hf = save_tiny("qwen2", tmp_path)
    model = load_pretrained(tmp_path, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    assert model.embed_tokens[...].dtype == jnp.float32
    got = np.asarray(model(jnp.asarray(_ids())))
    assert np.abs(got - hf_logits(hf, _ids())).max() < 0.1  # bf16 rounding, not a bug


@pytest.mark.parametrize("scan", [False, True], ids=["per_layer", "scan_layers"])
def test_peft_adapter_round_trip(scan, tmp_path):
    import peft
    import transformers

    save_tiny("qwen2", tmp_path / "base")
    model = load_pretrained(tmp_path / "base", scan_layers=scan)
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.0))
    # Give B non-zero values so the adapter changes the logits.
    rng = np.random.default_rng(0)
    from flax import nnx
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)):
        var[...] = jnp.asarray(rng.normal(0, 0.05, var.shape), jnp.float32)
    save_adapter(model, tmp_path / "adapter", base_model_name_or_path=str(tmp_path / "base"))

    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    peft_model = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    ids = _ids(3)
    ours = np.asarray(model(jnp.asarray(ids)))
    np.testing.assert_allclose(hf_logits(peft_model, ids), ours, atol=1e-4, rtol=0)

    # Merged export equals the adapter on the base.
    save_pretrained(model, tmp_path / "merged")
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    np.testing.assert_allclose(hf_logits(merged, ids), ours, atol=1e-4, rtol=0)


def test_folder_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(PretrainedLoadError, match="has no config.json"):
        load_pretrained(tmp_path)


def test_missing_and_mis_shaped_tensors_are_listed(tmp_path):
    from safetensors.numpy import load_file, save_file

    save_tiny("llama", tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    tensors["model.norm.weight"] = np.ones(3, np.float32)
    tensors["model.layers.0.extra.weight"] = np.ones(3, np.float32)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(PretrainedLoadError) as error:
        load_pretrained(tmp_path)
    message = str(error.value)
    assert "missing tensors: ['model.layers.1.mlp.up_proj.weight']" in message
    assert "unexpected tensors: ['model.layers.0.extra.weight']" in message
    assert "model.norm.weight: checkpoint (3,), model (64,)" in message


def test_unsupported_architecture(tmp_path):
    save_tiny("qwen2", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_type"] = "gpt2"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unsupported architecture: model_type='gpt2'"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("scan", [False, True], ids=["per_layer", "scan_layers"])
def test_load_straight_onto_a_mesh(scan, tmp_path):
    import jax

    from lbw_jax.train.models import make_mesh

    if jax.device_count() < 8:
        pytest.skip("needs 8 devices (see conftest)")
    hf = save_tiny("qwen2", tmp_path)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    model = load_pretrained(tmp_path, mesh=mesh, scan_layers=scan)
    P = jax.sharding.PartitionSpec
    if scan:   # every device holds every layer of its shard of the stacked weight
        kernel = model.layers.self_attn.q_proj.kernel[...]
        assert kernel.sharding.spec == P(None, "fsdp", "tensor")
    else:
        kernel = model.layers[1].self_attn.q_proj.kernel[...]
        assert kernel.sharding.spec == P("fsdp", "tensor")
    assert len(kernel.addressable_shards) == 8
    ids = _ids(4, shape=(4, 12))
    with jax.set_mesh(mesh):
        got = jax.jit(lambda m, x: m(x))(model, jnp.asarray(ids))
    np.testing.assert_allclose(np.asarray(got), hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_sharded_checkpoint_with_index(tmp_path):
    from hf_fixtures import tiny_hf_model

    hf = tiny_hf_model("llama", seed=7)
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model = load_pretrained(tmp_path)
    ids = _ids(5)
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(ids))), hf_logits(hf, ids),
                               atol=1e-4, rtol=0)
