"""Our S1/S2 configs from a GPT-SoVITS v1 file, and v1 config dicts for our models.

Reading: sizes come from the weights' shapes wherever a shape determines them (layer counts,
widths, kernel sizes, codebook, number of flows ...), the rest from the file's own config
(attention heads, upsample strides, dilations, ``max_sec``) and, for settings GPT-SoVITS v1
hard-codes in its classes, from those constants (``V1_FIXED``). A file written by
``convert_checkpoint.py`` also carries our full config under ``config["ar_vits"]``, which is
then used as is (the round trip ours -> v1 -> ours gives back the same config).

Writing: ``v1_s2_config`` / ``v1_s1_config`` give the plain-dict configs GPT-SoVITS's loaders
read (``SynthesizerTrn(**config["model"])`` with ``config["data"]``, and
``config["model"]`` / ``config["data"]["max_sec"]`` for S1). ``v1_mismatches_*`` list what of
a model GPT-SoVITS v1 could not build (its classes hard-code these sizes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from common.config import ConfigError, S1Config, S2Config, from_dict, to_dict
from common.gsv1.keys import KeyMapError

# What GPT-SoVITS v1's SynthesizerTrn / MultiPeriodDiscriminator / Text2SemanticDecoder hard-code.
V1_FIXED_S2 = {"ssl_dim": 768, "codebook_size": 1024, "hidden_channels": 192, "ref_hidden": 128, "ref_heads": 2,
               "ref_kernel_size": 5, "mrte_hidden": 512, "mrte_heads": 4, "gin_channels": 512,
               "posterior_layers": 16, "posterior_kernel_size": 5, "flow_layers": 4, "flow_kernel_size": 5,
               "n_flows": 4, "resblock": "1", "disc_periods": [2, 3, 5, 7, 11], "disc_channel_divisor": 1}
V1_N_SYMBOLS = 322
V1_BERT_DIM = 1024
OURS_KEY = "ar_vits"  # our full config inside a v1 file's config


def _count(weight: Mapping[str, Tensor], pattern: str) -> int:
    """Number of distinct indices N in keys matching ``pattern`` (a regex with one group for N)."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in weight if (m := rx.fullmatch(k))})


def _need(weight: Mapping[str, Tensor], key: str, source: str) -> Tensor:
    if key not in weight:
        raise KeyMapError(f"{source}: no {key} in the weights; this is not a complete GPT-SoVITS v1 file")
    return weight[key]


def _section(config: Mapping, name: str) -> dict:
    value = config.get(name, {}) if isinstance(config, Mapping) else {}
    return dict(value) if isinstance(value, Mapping) else {}


def _ours(cls: type, config: Mapping, source: str):
    try:
        return from_dict(cls, config[OURS_KEY], where=f"{source} config[{OURS_KEY!r}]")
    except ConfigError as err:
        raise ConfigError(str(err)) from None


def s2_config_from_v1(config: Mapping, weight: Mapping[str, Tensor], source: str,
                      disc_weight: Mapping[str, Tensor] | None = None) -> S2Config:
    """Our ``S2Config`` for a v1 generator ``weight`` (v1 names) and its file ``config``."""
    if isinstance(config, Mapping) and OURS_KEY in config:
        return _ours(S2Config, config, source)
    model, data = _section(config, "model"), _section(config, "data")
    w = weight
    emb = _need(w, "enc_p.text_embedding.weight", source)
    if emb.shape[0] != V1_N_SYMBOLS:
        raise KeyMapError(f"{source}: its phoneme table has {emb.shape[0]} symbols; AR-VITS uses GPT-SoVITS v1's "
                          f"{V1_N_SYMBOLS} (v2 files have 732 and are not supported)")
    hidden = emb.shape[1]
    ffn = _need(w, "enc_p.encoder_text.ffn_layers.0.conv_1.weight", source)
    rel_k = _need(w, "enc_p.encoder_text.attn_layers.0.emb_rel_k", source)
    codebook = _need(w, "quantizer.vq.layers.0._codebook.embed", source)
    ref_fc = _need(w, "ref_enc.spectral.0.fc.weight", source)
    n_ups = _count(w, r"dec\.ups\.(\d+)\.bias")
    n_res = _count(w, r"dec\.resblocks\.(\d+)\.convs1\.0\.bias")
    n_kernels = n_res // max(n_ups, 1)
    upsample_rates = model.get("upsample_rates")
    if not isinstance(upsample_rates, list) or len(upsample_rates) != n_ups:
        raise KeyMapError(f"{source}: config model.upsample_rates {upsample_rates!r} does not fit the {n_ups} "
                          "upsampling layers in the weights")
    dilations = model.get("resblock_dilation_sizes", [[1, 3, 5]] * n_kernels)
    has_enc_q = "enc_q.pre.weight" in w
    m = {
        "inter_channels": _need(w, "enc_p.proj.weight", source).shape[0] // 2,
        "hidden_channels": hidden,
        "filter_channels": ffn.shape[0],
        "n_heads": hidden // rel_k.shape[2],
        "n_layers": _count(w, r"enc_p\.encoder_text\.attn_layers\.(\d+)\.conv_q\.weight"),
        "kernel_size": ffn.shape[2],
        "p_dropout": float(model.get("p_dropout", 0.1)),
        "resblock": "1",
        "resblock_kernel_sizes": [int(_need(w, f"dec.resblocks.{i}.convs1.0.weight_v", source).shape[2])
                                  for i in range(n_kernels)],
        "resblock_dilation_sizes": dilations,
        "upsample_rates": upsample_rates,
        "upsample_initial_channel": _need(w, "dec.conv_pre.weight", source).shape[0],
        "upsample_kernel_sizes": [int(_need(w, f"dec.ups.{i}.weight_v", source).shape[2]) for i in range(n_ups)],
        "gin_channels": _need(w, "dec.cond.weight", source).shape[1],
        "semantic_frame_rate": "25hz" if _need(w, "ssl_proj.weight", source).shape[2] == 2 else "50hz",
        "freeze_quantizer": bool(model.get("freeze_quantizer", True)),
        "codebook_size": codebook.shape[0],
        "ref_hidden": ref_fc.shape[0],
        "ref_heads": V1_FIXED_S2["ref_heads"],
        "ref_kernel_size": _need(w, "ref_enc.temporal.0.conv1.conv.weight", source).shape[2],
        "mrte_hidden": _need(w, "enc_p.mrte.c_pre.weight", source).shape[0],
        "mrte_heads": V1_FIXED_S2["mrte_heads"],
        # without enc_q (exported inference weights) the posterior encoder gets v1's shape
        "posterior_layers": (_count(w, r"enc_q\.enc\.in_layers\.(\d+)\.bias") if has_enc_q
                             else V1_FIXED_S2["posterior_layers"]),
        "posterior_kernel_size": (w["enc_q.enc.in_layers.0.weight_v"].shape[2] if has_enc_q
                                  else V1_FIXED_S2["posterior_kernel_size"]),
        "flow_layers": _count(w, r"flow\.flows\.0\.enc\.in_layers\.(\d+)\.bias"),
        "flow_kernel_size": _need(w, "flow.flows.0.enc.in_layers.0.weight_v", source).shape[2],
        "n_flows": _count(w, r"flow\.flows\.(\d+)\.pre\.weight"),
        "use_spectral_norm": bool(model.get("use_spectral_norm", False)),
    }
    if disc_weight is not None:
        m.update(discriminator_config(disc_weight, source))
    d = {k: data[k] for k in ("sampling_rate", "filter_length", "hop_length", "win_length", "n_mel_channels",
                              "mel_fmin", "mel_fmax") if k in data}
    d["ssl_dim"] = codebook.shape[1]
    try:
        cfg = from_dict(S2Config, {"data": d, "model": m}, where=f"{source} (derived config)")
    except ConfigError as err:
        raise ConfigError(str(err)) from None
    if cfg.data.spec_channels != ref_fc.shape[1]:
        raise KeyMapError(f"{source}: the reference encoder takes {ref_fc.shape[1]} spectrogram bins but "
                          f"data.filter_length {cfg.data.filter_length} gives {cfg.data.spec_channels}")
    return cfg


def discriminator_config(weight: Mapping[str, Tensor], source: str) -> dict:
    """``disc_periods`` and ``disc_channel_divisor`` of a v1 discriminator ``weight``."""
    n_period = _count(weight, r"discriminators\.(\d+)\.conv_post\.bias") - 1
    if n_period != len(V1_FIXED_S2["disc_periods"]):
        raise KeyMapError(f"{source}: {n_period} period discriminators; a GPT-SoVITS v1 discriminator has 5 "
                          "(periods 2, 3, 5, 7, 11)")
    first = _need(weight, "discriminators.1.convs.0.bias", source).shape[0]
    return {"disc_periods": list(V1_FIXED_S2["disc_periods"]), "disc_channel_divisor": 32 // first}


def s1_config_from_v1(config: Mapping, weight: Mapping[str, Tensor], source: str) -> S1Config:
    """Our ``S1Config`` for a v1 S1 ``weight`` (v1 names) and its file ``config``."""
    if isinstance(config, Mapping) and OURS_KEY in config:
        return _ours(S1Config, config, source)
    model, data = _section(config, "model"), _section(config, "data")
    w = weight
    text = _need(w, "model.ar_text_embedding.word_embeddings.weight", source)
    audio = _need(w, "model.ar_audio_embedding.word_embeddings.weight", source)
    n_layer = _count(w, r"model\.h\.layers\.(\d+)\.norm1\.weight")
    for key, value in (("n_layer", n_layer), ("vocab_size", audio.shape[0]), ("EOS", audio.shape[0] - 1),
                       ("embedding_dim", text.shape[1])):
        if key in model and model[key] != value:
            raise KeyMapError(f"{source}: config model.{key} is {model[key]} but the weights have {value}")
    if "head" not in model:
        raise KeyMapError(f"{source}: config model.head (attention heads) is missing")
    m = {"codebook_size": audio.shape[0] - 1, "phoneme_vocab_size": text.shape[0], "embedding_dim": text.shape[1],
         "n_layer": n_layer, "n_head": int(model["head"]),
         "ffn_dim": _need(w, "model.h.layers.0.linear1.weight", source).shape[0],
         "dropout": 0.1, "pos_dropout": 0.1,  # v1 hard-codes both (its model.dropout is the unused embedding dropout)
         "bert_dim": w["model.bert_proj.weight"].shape[1] if "model.bert_proj.weight" in w else 0}
    raw = {"model": m, "inference": {"rules": "gsv1"}}  # v1 S1 needs v1's inference rules (infer/rules.py)
    if "max_sec" in data:
        raw["data"] = {"max_seconds": float(data["max_sec"])}
    try:
        return from_dict(S1Config, raw, where=f"{source} (derived config)")
    except ConfigError as err:
        raise ConfigError(str(err)) from None


# ----------------------------------------------------------------------------- writing


def v1_mismatches_s2(cfg: S2Config, n_symbols: int) -> list[str]:
    """Settings of ``cfg`` that GPT-SoVITS v1 cannot build (empty: its loaders read the file)."""
    have = {**{f"model.{k}": v for k, v in to_dict(cfg.model).items()}, "data.ssl_dim": cfg.data.ssl_dim}
    out = [f"{name} is {have[name]!r} (v1: {v!r})" for k, v in V1_FIXED_S2.items()
           if have[name := ("data." if k == "ssl_dim" else "model.") + k] != v]
    if n_symbols != V1_N_SYMBOLS:
        out.append(f"{n_symbols} phoneme symbols (v1: {V1_N_SYMBOLS})")
    return out


def v1_mismatches_s1(cfg: S1Config) -> list[str]:
    m = cfg.model
    out = []
    if m.ffn_dim != 4 * m.embedding_dim:
        out.append(f"model.ffn_dim is {m.ffn_dim} (v1: 4 x embedding_dim = {4 * m.embedding_dim})")
    if m.bert_dim not in (0, V1_BERT_DIM):
        out.append(f"model.bert_dim is {m.bert_dim} (v1: {V1_BERT_DIM}, or 0 written as a zero bert_proj)")
    return out


def v1_s2_config(cfg: S2Config) -> dict:
    """The plain-dict config of a v1 SoVITS file (layout of GPT-SoVITS ``configs/s2.json``) + ours."""
    t, d, m = cfg.train, cfg.data, cfg.model
    return {
        "train": {"log_interval": t.log_interval, "eval_interval": t.eval_interval, "seed": t.seed,
                  "epochs": t.epochs, "learning_rate": t.learning_rate, "betas": list(t.betas), "eps": t.eps,
                  "batch_size": t.batch_size, "fp16_run": t.precision == "fp16", "lr_decay": t.lr_decay,
                  "segment_size": t.segment_size, "init_lr_ratio": 1, "warmup_epochs": 0, "c_mel": t.c_mel,
                  "c_kl": t.c_kl, "text_low_lr_rate": t.text_low_lr_rate},
        "data": {"max_wav_value": 32768.0, "sampling_rate": d.sampling_rate, "filter_length": d.filter_length,
                 "hop_length": d.hop_length, "win_length": d.win_length, "n_mel_channels": d.n_mel_channels,
                 "mel_fmin": d.mel_fmin, "mel_fmax": d.mel_fmax, "add_blank": True, "n_speakers": 300,
                 "cleaned_text": True},
        "model": {"inter_channels": m.inter_channels, "hidden_channels": m.hidden_channels,
                  "filter_channels": m.filter_channels, "n_heads": m.n_heads, "n_layers": m.n_layers,
                  "kernel_size": m.kernel_size, "p_dropout": m.p_dropout, "resblock": m.resblock,
                  "resblock_kernel_sizes": list(m.resblock_kernel_sizes),
                  "resblock_dilation_sizes": [list(x) for x in m.resblock_dilation_sizes],
                  "upsample_rates": list(m.upsample_rates), "upsample_initial_channel": m.upsample_initial_channel,
                  "upsample_kernel_sizes": list(m.upsample_kernel_sizes), "n_layers_q": 3,
                  "use_spectral_norm": m.use_spectral_norm, "gin_channels": m.gin_channels,
                  "semantic_frame_rate": m.semantic_frame_rate, "freeze_quantizer": m.freeze_quantizer},
        "content_module": "cnhubert",
        OURS_KEY: to_dict(cfg),
    }


def v1_s1_config(cfg: S1Config) -> dict:
    """The plain-dict config of a v1 GPT file (layout of GPT-SoVITS ``configs/s1longer.yaml``) + ours."""
    m, t = cfg.model, cfg.train
    max_sec = int(cfg.data.max_seconds) if float(cfg.data.max_seconds).is_integer() else cfg.data.max_seconds
    return {
        "train": {"seed": t.seed, "epochs": t.epochs, "batch_size": 8, "save_every_n_epoch": 1,
                  "precision": "16-mixed", "gradient_clip": t.grad_clip},
        "optimizer": {"lr": 0.01, "lr_init": 1e-5, "lr_end": 1e-4, "warmup_steps": 2000, "decay_steps": 40000},
        "data": {"max_eval_sample": 8, "max_sec": max_sec, "num_workers": 4, "pad_val": m.eos_id},
        "model": {"vocab_size": m.vocab_size, "phoneme_vocab_size": m.phoneme_vocab_size,
                  "embedding_dim": m.embedding_dim, "hidden_dim": m.embedding_dim, "head": m.n_head,
                  "linear_units": m.ffn_dim, "n_layer": m.n_layer, "dropout": 0, "EOS": m.eos_id, "random_bert": 0},
        "inference": {"top_k": cfg.inference.top_k},
        OURS_KEY: to_dict(cfg),
    }
