"""SoVITS (S2): HuBERT features -> semantic tokens -> VITS prior/posterior/flow -> HiFi-GAN.

Training forward (spec §2.2): ``ssl [B, D, T]`` 50 Hz HuBERT features and ``y [B, F, T]``
linear spectrogram -> ``ssl_proj`` (stride 2 for 25 Hz) -> EMA codebook -> x2 nearest
upsample -> ``enc_p`` (content + phoneme encoders, MRTE, style) gives the prior;
``enc_q`` on the spectrogram gives the posterior; ``flow`` maps posterior samples to the
prior space; ``dec`` renders a random window of ``segment_frames`` latent frames.

The style vector ``ge [B, gin, 1]`` comes from the reference encoder over the target
spectrogram itself (training) or a reference utterance (inference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.config import S2Config
from modules.attentions import Encoder
from modules.commons import fold_weight_norm, frame_mask, rand_slice_segments
from modules.hifigan import Generator, MultiPeriodDiscriminator
from modules.mrte import MRTE
from modules.quantize import QuantizedResult, VectorQuantizer
from modules.reference_encoder import MelStyleEncoder
from modules.vits import PosteriorEncoder, ResidualCouplingBlock


class TextEncoder(nn.Module):
    """Prior encoder ``enc_p``: content frames + phonemes + style -> ``m_p, logs_p``.

    ``ssl_proj`` (1x1) -> ``encoder_ssl`` (n_layers // 2); phoneme embedding (no √d scaling)
    -> ``encoder_text`` (n_layers); ``mrte`` cross-attention; ``encoder2`` (n_layers // 2);
    ``proj`` to mean and log-std.
    """

    def __init__(self, n_symbols: int, ssl_dim: int, out_channels: int, hidden_channels: int,
                 filter_channels: int, n_heads: int, n_layers: int, kernel_size: int, p_dropout: float,
                 mrte_hidden: int, mrte_heads: int):
        super().__init__()
        self.out_channels = out_channels
        self.ssl_proj = nn.Conv1d(ssl_dim, hidden_channels, 1)
        self.encoder_ssl = Encoder(hidden_channels, filter_channels, n_heads, n_layers // 2, kernel_size,
                                   p_dropout)
        self.text_embedding = nn.Embedding(n_symbols, hidden_channels)
        self.encoder_text = Encoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout)
        self.mrte = MRTE(hidden_channels, mrte_hidden, hidden_channels, mrte_heads)
        self.encoder2 = Encoder(hidden_channels, filter_channels, n_heads, n_layers // 2, kernel_size, p_dropout)
        self.proj = nn.Conv1d(hidden_channels, 2 * out_channels, 1)

    def forward(self, content: Tensor, y_mask: Tensor, text: Tensor, text_mask: Tensor,
                ge: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """content: [B, D_ssl, T]; y_mask: [B, 1, T]; text: [B, L] ids; text_mask: [B, 1, L];
        ge: [B, gin, 1] or None -> (hidden [B, H, T], m_p [B, out, T], logs_p [B, out, T])."""
        y = self.ssl_proj(content * y_mask) * y_mask
        y = self.encoder_ssl(y * y_mask, y_mask)
        t = self.text_embedding(text).transpose(1, 2)  # [B, H, L]
        t = self.encoder_text(t * text_mask, text_mask)
        y = self.mrte(y, y_mask, t, text_mask, ge)
        y = self.encoder2(y * y_mask, y_mask)
        stats = self.proj(y) * y_mask
        m_p, logs_p = stats.split(self.out_channels, dim=1)
        return y, m_p, logs_p


@dataclass
class S2Output:
    y_hat: Tensor  # [B, 1, segment_frames · hop] generated waveform window
    ids_slice: Tensor  # [B] int64 start frame of each window
    commit_loss: Tensor  # scalar fp32 (0 when the quantizer is frozen or in eval)
    z: Tensor  # [B, C, T] posterior sample
    z_p: Tensor  # [B, C, T] flow(z)
    m_p: Tensor  # [B, C, T] prior mean
    logs_p: Tensor  # [B, C, T] prior log-std
    m_q: Tensor  # [B, C, T] posterior mean
    logs_q: Tensor  # [B, C, T] posterior log-std
    y_mask: Tensor  # [B, 1, T]
    codes: Tensor  # [B, T_tok] semantic tokens (T_tok = T // 2 for 25 Hz)
    z_p_mean: Tensor | None = None  # [B, C, T] flow(m_q), no gradient (``prior_target=True`` only)


class SynthesizerTrn(nn.Module):
    """The S2 generator (``ssl_proj``, ``quantizer``, ``enc_p``, ``ref_enc``, ``enc_q``, ``flow``, ``dec``).

    Full-size defaults are the GPT-SoVITS v1 shapes. ``freeze_quantizer`` turns off the
    gradient of ``ssl_proj`` and every codebook update, in train and eval mode alike.
    ``n_speakers > 0`` adds a learned speaker embedding ``[gin]`` to the reference encoder's
    style vector wherever ``speakers [B]`` (rows of the run's speaker table) are given.
    """

    def __init__(self, *, n_symbols: int, spec_channels: int = 1025, segment_frames: int = 32,
                 ssl_dim: int = 768, inter_channels: int = 192, hidden_channels: int = 192,
                 filter_channels: int = 768, n_heads: int = 2, n_layers: int = 6, kernel_size: int = 3,
                 p_dropout: float = 0.1, resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
                 resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
                 upsample_rates: Sequence[int] = (10, 8, 2, 2, 2), upsample_initial_channel: int = 512,
                 upsample_kernel_sizes: Sequence[int] = (16, 16, 8, 2, 2), gin_channels: int = 512,
                 semantic_frame_rate: str = "25hz", freeze_quantizer: bool = False,
                 codebook_size: int = 1024, codebook_decay: float = 0.99, kmeans_iters: int = 50,
                 dead_code_threshold: float = 2.0, ref_hidden: int = 128, ref_heads: int = 2,
                 ref_kernel_size: int = 5, mrte_hidden: int = 512, mrte_heads: int = 4,
                 posterior_layers: int = 16, posterior_kernel_size: int = 5, flow_layers: int = 4,
                 flow_kernel_size: int = 5, n_flows: int = 4, n_speakers: int = 0):
        super().__init__()
        if semantic_frame_rate not in ("25hz", "50hz"):
            raise ValueError(f"semantic_frame_rate must be '25hz' or '50hz', got {semantic_frame_rate!r}")
        if gin_channels != mrte_hidden:
            raise ValueError(f"the style vector is added inside MRTE: gin_channels ({gin_channels}) must equal "
                             f"mrte_hidden ({mrte_hidden})")
        self.segment_frames = segment_frames
        self.frames_per_token = 2 if semantic_frame_rate == "25hz" else 1
        self.hop_length = math.prod(upsample_rates)
        self.ssl_proj = nn.Conv1d(ssl_dim, ssl_dim, self.frames_per_token, stride=self.frames_per_token)
        self.quantizer = VectorQuantizer(ssl_dim, codebook_size, decay=codebook_decay, kmeans_iters=kmeans_iters,
                                         dead_code_threshold=dead_code_threshold)
        self.enc_p = TextEncoder(n_symbols, ssl_dim, inter_channels, hidden_channels, filter_channels, n_heads,
                                 n_layers, kernel_size, p_dropout, mrte_hidden, mrte_heads)
        self.ref_enc = MelStyleEncoder(spec_channels, ref_hidden, gin_channels, ref_kernel_size, ref_heads,
                                       dropout=0.1)
        self.enc_q = PosteriorEncoder(spec_channels, inter_channels, hidden_channels, posterior_kernel_size, 1,
                                      posterior_layers, gin_channels=gin_channels)
        self.flow = ResidualCouplingBlock(inter_channels, hidden_channels, flow_kernel_size, 1, flow_layers,
                                          n_flows=n_flows, gin_channels=gin_channels)
        self.dec = Generator(inter_channels, list(resblock_kernel_sizes), [list(d) for d in resblock_dilation_sizes],
                             list(upsample_rates), upsample_initial_channel, list(upsample_kernel_sizes),
                             gin_channels=gin_channels)
        self.n_speakers = n_speakers
        self.speaker_embedding = nn.Embedding(n_speakers, gin_channels) if n_speakers > 0 else None
        self.quantizer_frozen = False
        if freeze_quantizer:
            self.freeze_quantizer()

    def freeze_quantizer(self) -> None:
        """Freeze ``ssl_proj`` (no gradient) and the codebook (no k-means, EMA, reset, commit loss)."""
        self.quantizer_frozen = True
        self.ssl_proj.requires_grad_(False)
        self.quantizer.freeze()

    def token_lengths(self, frame_lengths: Tensor) -> Tensor:
        """Number of whole tokens in ``frame_lengths`` 50 Hz frames (``// 2`` for 25 Hz)."""
        return torch.div(frame_lengths, self.frames_per_token, rounding_mode="floor")

    def _project_ssl(self, ssl: Tensor) -> Tensor:
        """ssl: [B, D, T] -> [B, D, T // frames_per_token] in fp32 (no gradient when frozen)."""
        with torch.autocast(device_type=ssl.device.type, enabled=False), \
                torch.set_grad_enabled(torch.is_grad_enabled() and not self.quantizer_frozen):
            return self.ssl_proj(ssl.float())

    def _to_frames(self, tokens: Tensor, n_frames: int) -> Tensor:
        """Token-rate vectors [B, D, N] -> [B, D, n_frames] by nearest repetition (+ replicate at the end)."""
        x = tokens.repeat_interleave(self.frames_per_token, dim=2) if self.frames_per_token > 1 else tokens
        if x.size(2) < n_frames:
            x = F.pad(x, (0, n_frames - x.size(2)), mode="replicate")
        return x[:, :, :n_frames]

    def add_speaker(self, ge: Tensor | None, speakers: Tensor | None) -> Tensor | None:
        """Style ``ge [B or 1, gin, 1]`` (or None) plus the speaker embedding of ``speakers [B]`` (if given)."""
        if speakers is None:
            return ge
        if self.speaker_embedding is None:
            raise ValueError("speakers given but the S2 model has n_speakers=0")
        if bool((speakers < 0).any() | (speakers >= self.n_speakers).any()):
            raise ValueError(f"speaker ids {speakers.tolist()} outside [0, {self.n_speakers})")
        spk = self.speaker_embedding(speakers)[:, :, None]  # [B, gin, 1]
        return spk if ge is None else ge + spk.to(ge.dtype)

    def forward(self, ssl: Tensor, y: Tensor, y_lengths: Tensor, text: Tensor, text_lengths: Tensor,
                generator: torch.Generator | None = None, speakers: Tensor | None = None,
                prior_target: bool = False) -> S2Output:
        """ssl: [B, D_ssl, T]; y: [B, F, T] linear spectrogram; y_lengths: [B]; text: [B, L]; text_lengths: [B];
        speakers: [B] speaker rows (models with n_speakers > 0) or None; prior_target: also return
        ``z_p_mean = flow(m_q)`` (no gradient), the target of ``modules.losses.prior_mean_loss``."""
        n_frames = y.size(2)
        if ssl.size(2) != n_frames:
            raise ValueError(f"ssl has {ssl.size(2)} frames but the spectrogram has {n_frames}: they must be "
                             "length-matched before the model")
        y_mask = frame_mask(y_lengths, n_frames, y.dtype)
        text_mask = frame_mask(text_lengths, text.size(1), y.dtype)
        ge = self.add_speaker(self.ref_enc(y * y_mask, y_mask), speakers)

        tokens = self._project_ssl(ssl)  # [B, D, T // fpt]
        with torch.autocast(device_type=ssl.device.type, enabled=False):
            token_mask = frame_mask(self.token_lengths(y_lengths), tokens.size(2))
            quant: QuantizedResult = self.quantizer(tokens, token_mask)
        content = self._to_frames(quant.quantized, n_frames)  # [B, D, T]

        _, m_p, logs_p = self.enc_p(content, y_mask, text, text_mask, ge)
        z, m_q, logs_q = self.enc_q(y, y_mask, g=ge, generator=generator)
        z_p = self.flow(z, y_mask, g=ge)
        z_p_mean = None
        if prior_target:
            with torch.no_grad():
                z_p_mean = self.flow(m_q, y_mask, g=ge)
        z_slice, ids_slice = rand_slice_segments(z, y_lengths, self.segment_frames, generator=generator)
        y_hat = self.dec(z_slice, g=ge)
        return S2Output(y_hat=y_hat, ids_slice=ids_slice, commit_loss=quant.commit_loss, z=z, z_p=z_p, m_p=m_p,
                        logs_p=logs_p, m_q=m_q, logs_q=logs_q, y_mask=y_mask, codes=quant.codes,
                        z_p_mean=z_p_mean)

    @torch.no_grad()
    def extract_codes(self, ssl: Tensor, lengths: Tensor | None = None) -> Tensor:
        """ssl: [B, D_ssl, T50] -> codes [B, T50 // frames_per_token] (fp32 nearest code, no side effects).

        With ``lengths [B]`` (50 Hz frames) padding is zeroed first; item b then has
        ``token_lengths(lengths)[b]`` valid codes, the rest are filler.
        """
        if lengths is not None:
            ssl = ssl.float() * frame_mask(lengths, ssl.size(2))
        return self.quantizer.encode(self._project_ssl(ssl))

    @torch.no_grad()
    def decode(self, codes: Tensor, text: Tensor, text_lengths: Tensor, refer_spec: Tensor | None,
               refer_lengths: Tensor | None = None, noise_scale: float = 0.5, code_lengths: Tensor | None = None,
               generator: torch.Generator | None = None, noise: Tensor | None = None,
               speakers: Tensor | None = None, dec_dtype: torch.dtype | None = None) -> Tensor:
        """Synthesize from semantic tokens (call ``eval()`` first).

        codes: [B, N] tokens; text: [B, L] phoneme ids; text_lengths: [B]; refer_spec: [B, F, T_ref]
        linear spectrogram of the reference, or [1, F, T_ref] shared by all rows (its style vector
        is computed once), or None (no style); refer_lengths: [B] or None (all frames real);
        code_lengths: [B] or None (all N real); noise: [B, inter, N · frames_per_token] standard
        normal prior noise (e.g. ``s2.noise.batch_noise``), else drawn with ``generator``;
        speakers: [B] speaker rows added to the style (models with n_speakers > 0) or None;
        dec_dtype: run the HiFi-GAN generator under autocast to this dtype (e.g. ``torch.bfloat16``,
        ~1.8x faster on CPUs with native bf16; the encoders, flow and the output stay fp32) or None.
        Returns wav [B, 1, N · frames_per_token · hop] (fp32), zero after each item's length.

        Rows are independent: padding is zeroed before every convolution of the generator, so a
        row decoded in a padded batch gives, up to float rounding, the samples it gives alone
        (with the same ``noise`` row).
        """
        ge = self.style(refer_spec, refer_lengths, speakers)
        z, y_mask = self.prior_latent(codes, text, text_lengths, ge, noise_scale, code_lengths, generator, noise)
        frame_lengths = y_mask.sum(dim=(1, 2)).long()  # [B]
        padded = bool((frame_lengths < z.size(2)).any())
        wav = self.render(z, ge, y_mask if padded else None, dec_dtype)  # [B, 1, T · hop]
        sample_mask = frame_mask(frame_lengths * self.hop_length, wav.size(2), wav.dtype)
        return wav * sample_mask

    @torch.no_grad()
    def render(self, z: Tensor, ge: Tensor | None, x_mask: Tensor | None = None,
               dec_dtype: torch.dtype | None = None) -> Tensor:
        """The HiFi-GAN generator on ``z [B, inter, T]`` with style ``ge`` (``x_mask [B, 1, T]`` for padded rows),
        under autocast to ``dec_dtype`` when given -> fp32 wav [B, 1, T · hop]."""
        with torch.autocast(z.device.type, dtype=dec_dtype or torch.bfloat16, enabled=dec_dtype is not None):
            return self.dec(z, g=ge, x_mask=x_mask).float()

    @torch.no_grad()
    def style(self, refer_spec: Tensor | None, refer_lengths: Tensor | None = None,
              speakers: Tensor | None = None) -> Tensor | None:
        """Style vector of the reference: refer_spec [B, F, T_ref] (+ refer_lengths [B]) -> ge [B, gin, 1],
        plus the speaker embedding of ``speakers [B]`` when given.

        None (no reference, no speakers) gives None."""
        if refer_spec is None:
            return self.add_speaker(None, speakers)
        if refer_lengths is None:
            refer_mask = torch.ones(refer_spec.size(0), 1, refer_spec.size(2), device=refer_spec.device)
        else:
            refer_mask = frame_mask(refer_lengths, refer_spec.size(2))
        return self.add_speaker(self.ref_enc(refer_spec * refer_mask, refer_mask), speakers)

    @torch.no_grad()
    def prior_latent(self, codes: Tensor, text: Tensor, text_lengths: Tensor, ge: Tensor | None,
                     noise_scale: float = 0.5, code_lengths: Tensor | None = None,
                     generator: torch.Generator | None = None, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The decoder's input: tokens -> prior -> sample -> reverse flow (arguments as in ``decode``; ``ge``
        [B or 1, gin, 1] from ``style``). Returns z [B, inter, T] (zero on padding) and y_mask [B, 1, T],
        T = N · frames_per_token."""
        b, n = codes.shape
        device = codes.device
        if code_lengths is None:
            code_lengths = torch.full((b,), n, dtype=torch.long, device=device)
        n_frames = n * self.frames_per_token
        y_mask = frame_mask(code_lengths.to(device) * self.frames_per_token, n_frames)
        codes = codes.masked_fill(frame_mask(code_lengths.to(device), n, torch.bool).squeeze(1).logical_not(), 0)
        text_mask = frame_mask(text_lengths, text.size(1))
        if ge is not None:
            ge = ge.expand(b, -1, -1)  # [B, gin, 1]
        content = self._to_frames(self.quantizer.decode(codes), n_frames)  # [B, D, T]
        _, m_p, logs_p = self.enc_p(content, y_mask, text, text_mask, ge)
        if noise is None:
            noise = torch.randn(m_p.shape, device=device, dtype=m_p.dtype, generator=generator)
        elif noise.shape != m_p.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(m_p.shape)}")
        z_p = (m_p + noise.to(m_p) * torch.exp(logs_p) * noise_scale) * y_mask
        return self.flow(z_p, y_mask, g=ge, reverse=True) * y_mask, y_mask

    def fold_weight_norm(self) -> int:
        """Fold every weight-norm parametrization into plain weights (inference); returns the count."""
        return fold_weight_norm(self)


def build_generator(cfg: S2Config, n_symbols: int | None = None) -> SynthesizerTrn:
    """``SynthesizerTrn`` from an ``S2Config``; ``n_symbols`` defaults to ``len(text.symbols.SYMBOLS)``."""
    if n_symbols is None:
        from text.symbols import SYMBOLS

        n_symbols = len(SYMBOLS)
    m, d = cfg.model, cfg.data
    return SynthesizerTrn(
        n_symbols=n_symbols, spec_channels=d.spec_channels, segment_frames=cfg.train.segment_frames,
        ssl_dim=d.ssl_dim, inter_channels=m.inter_channels, hidden_channels=m.hidden_channels,
        filter_channels=m.filter_channels, n_heads=m.n_heads, n_layers=m.n_layers, kernel_size=m.kernel_size,
        p_dropout=m.p_dropout, resblock_kernel_sizes=m.resblock_kernel_sizes,
        resblock_dilation_sizes=m.resblock_dilation_sizes, upsample_rates=m.upsample_rates,
        upsample_initial_channel=m.upsample_initial_channel, upsample_kernel_sizes=m.upsample_kernel_sizes,
        gin_channels=m.gin_channels, semantic_frame_rate=m.semantic_frame_rate,
        freeze_quantizer=m.freeze_quantizer, codebook_size=m.codebook_size, codebook_decay=m.codebook_decay,
        kmeans_iters=m.kmeans_iters, dead_code_threshold=m.dead_code_threshold, ref_hidden=m.ref_hidden,
        ref_heads=m.ref_heads, ref_kernel_size=m.ref_kernel_size, mrte_hidden=m.mrte_hidden,
        mrte_heads=m.mrte_heads, posterior_layers=m.posterior_layers,
        posterior_kernel_size=m.posterior_kernel_size, flow_layers=m.flow_layers,
        flow_kernel_size=m.flow_kernel_size, n_flows=m.n_flows, n_speakers=m.n_speakers)


def build_discriminator(cfg: S2Config) -> MultiPeriodDiscriminator:
    """``MultiPeriodDiscriminator`` from an ``S2Config``."""
    m = cfg.model
    return MultiPeriodDiscriminator(m.disc_periods, use_spectral_norm=m.use_spectral_norm,
                                    channel_divisor=m.disc_channel_divisor)


def build_model(cfg: S2Config, n_symbols: int | None = None) -> tuple[SynthesizerTrn, MultiPeriodDiscriminator]:
    """Generator and discriminator for an ``S2Config``."""
    return build_generator(cfg, n_symbols), build_discriminator(cfg)
