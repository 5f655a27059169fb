"""The PyTorch peer of `disendiff bench`: the same UNet, shapes and protocol, timed on the same machine.

diffusers is not a Debian package, so this is SD 1.x's UNet2DConditionModel written out in plain torch with
diffusers' parameter names: `load_state_dict(strict=True)` on a fixture's weights proves the architecture, and
`--check` compares its output with the fixture's recorded diffusers output (fixtures/sd-tiny/README.md).
Protocol as torch-cpu-timing.json: float32, train() mode, the default attention processor (scores materialised
with baddbmm, as diffusers on torch < 2); forward = no_grad forward; forward+backward = zero_grad + forward +
mse_loss + backward into every parameter, no optimizer step; a warm-up, then `--runs` timed runs.

    python3 bench/torch/unet_timing.py --case A --threads 2 --runs 5      # one JSON line (--profile: ms by op)
    python3 bench/torch/unet_timing.py --check fixtures/sd-tiny/A         # max abs error against diffusers

Needs only torch (Debian: python3-torch, which is torch 1.13 like the reference) and numpy.
"""
import argparse
import json
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    kinds = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(body[a:b], dtype=kinds[v["dtype"]]).reshape(v["shape"]).copy())
    return out


class Attention(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def split(self, x):
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).permute(0, 2, 1, 3).reshape(b * self.heads, n, c // self.heads)

    def forward(self, x, context=None):
        src = x if context is None else context
        q, k, v = self.split(self.to_q(x)), self.split(self.to_k(src)), self.split(self.to_v(src))
        # diffusers' AttnProcessor.get_attention_scores: baddbmm into an empty tensor with beta 0, softmax
        empty = torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype)
        probs = torch.baddbmm(empty, q, k.transpose(-1, -2), beta=0, alpha=self.scale).softmax(dim=-1)
        out = torch.bmm(probs, v)
        bh, n, d = out.shape
        out = out.reshape(bh // self.heads, self.heads, n, d).permute(0, 2, 1, 3).reshape(bh // self.heads, n, self.heads * d)
        return self.to_out[1](self.to_out[0](out))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim, dim, heads)
        self.norm2, self.attn2 = nn.LayerNorm(dim), Attention(dim, context_dim, heads)
        self.norm3, self.ff = nn.LayerNorm(dim), FeedForward(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    def __init__(self, dim, context_dim, heads, groups, linear_projection):
        super().__init__()
        self.linear = linear_projection
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim) if linear_projection else nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(dim, context_dim, heads)])
        self.proj_out = nn.Linear(dim, dim) if linear_projection else nn.Conv2d(dim, dim, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        n = self.norm(x)
        if self.linear:
            t = self.proj_in(n.permute(0, 2, 3, 1).reshape(b, h * w, c))
        else:
            t = self.proj_in(n).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for blk in self.transformer_blocks:
            t = blk(t, context)
        if self.linear:
            out = self.proj_out(t).reshape(b, h, w, c).permute(0, 3, 1, 2)
        else:
            out = self.proj_out(t.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous())
        return out + x


class Resnet(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):
    def __init__(self, resnets, attentions, sampler):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions:
            self.attentions = nn.ModuleList(attentions)
        else:
            self.attentions = None
        if sampler is not None:
            setattr(self, "downsamplers" if isinstance(sampler, Down) else "upsamplers", nn.ModuleList([sampler]))


class Mid(nn.Module):
    def __init__(self, resnets, attention):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList([attention])


class Unet(nn.Module):
    """SD 1.x UNet2DConditionModel (positional time embedding, default resnets, one transformer layer)."""

    def __init__(self, cfg):
        super().__init__()
        ch = cfg["block_out_channels"]
        self.ch0 = ch[0]
        self.freq_shift = cfg.get("freq_shift", 0)
        g, eps = cfg.get("norm_num_groups", 32), cfg.get("norm_eps", 1e-5)
        lpb = cfg.get("layers_per_block", 2)
        heads = cfg.get("attention_head_dim", 8)
        heads = heads if isinstance(heads, list) else [heads] * len(ch)
        ctx = cfg["cross_attention_dim"]
        lin = cfg.get("use_linear_projection", False)
        temb = 4 * ch[0]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = nn.Module()
        self.time_embedding.linear_1 = nn.Linear(ch[0], temb)
        self.time_embedding.linear_2 = nn.Linear(temb, temb)
        self.down_blocks = nn.ModuleList()
        self.down_cross = []
        prev = ch[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            cross = kind.startswith("CrossAttn")
            res = [Resnet(prev if j == 0 else ch[i], ch[i], temb, g, eps) for j in range(lpb)]
            att = [Transformer2D(ch[i], ctx, heads[i], g, lin) for _ in range(lpb)] if cross else []
            self.down_blocks.append(Block(res, att, Down(ch[i]) if i < len(ch) - 1 else None))
            self.down_cross.append(cross)
            prev = ch[i]
        self.mid_block = Mid([Resnet(ch[-1], ch[-1], temb, g, eps) for _ in range(2)], Transformer2D(ch[-1], ctx, heads[-1], g, lin))
        rch, rheads = list(reversed(ch)), list(reversed(heads))
        self.up_blocks = nn.ModuleList()
        self.up_cross = []
        prev = rch[0]
        for i, kind in enumerate(cfg["up_block_types"]):
            cross = kind.startswith("CrossAttn")
            out, inp = rch[i], rch[min(i + 1, len(ch) - 1)]
            res = [Resnet((prev if j == 0 else out) + (inp if j == lpb else out), out, temb, g, eps) for j in range(lpb + 1)]
            att = [Transformer2D(out, ctx, rheads[i], g, lin) for _ in range(lpb + 1)] if cross else []
            self.up_blocks.append(Block(res, att, Up(out) if i < len(ch) - 1 else None))
            self.up_cross.append(cross)
            prev = out
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def time_proj(self, t):
        half = self.ch0 // 2
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - self.freq_shift)
        e = t.float()[:, None] * torch.exp(exponent)[None, :]
        return torch.cat([torch.cos(e), torch.sin(e)], dim=-1)  # flip_sin_to_cos

    def forward(self, x, t, context):
        temb = self.time_embedding.linear_2(F.silu(self.time_embedding.linear_1(self.time_proj(t))))
        h = self.conv_in(x)
        skips = [h]
        for blk, cross in zip(self.down_blocks, self.down_cross):
            for j, r in enumerate(blk.resnets):
                h = r(h, temb)
                if cross:
                    h = blk.attentions[j](h, context)
                skips.append(h)
            if hasattr(blk, "downsamplers"):
                h = blk.downsamplers[0](h)
                skips.append(h)
        h = self.mid_block.resnets[0](h, temb)
        h = self.mid_block.attentions[0](h, context)
        h = self.mid_block.resnets[1](h, temb)
        for blk, cross in zip(self.up_blocks, self.up_cross):
            for j, r in enumerate(blk.resnets):
                h = r(torch.cat([h, skips.pop()], dim=1), temb)
                if cross:
                    h = blk.attentions[j](h, context)
            if hasattr(blk, "upsamplers"):
                h = blk.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


# the medium UNet of packages/core/src/bench/Bench.ts (`mediumUnet`) and the reference timing
MEDIUM = {
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [128, 256, 256],
    "layers_per_block": 2,
    "cross_attention_dim": 256,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}


def check(folder):
    with open(os.path.join(folder, "unet", "config.json")) as f:
        cfg = json.load(f)
    model = Unet(cfg)
    model.load_state_dict(read_safetensors(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors")), strict=True)
    io = read_safetensors(os.path.join(folder, "unet_io.safetensors"))
    with torch.no_grad():
        out = model(io["sample"], io["timestep"], io["encoder_hidden_states"])
    err = (out - io["out"]).abs().max().item()
    print(json.dumps({"folder": folder, "parameters": sum(p.numel() for p in model.parameters()), "max_abs_error": err, "out_max_abs": io["out"].abs().max().item()}))


def timing(cfg, batch, size, runs, tokens=77, profile=False):
    torch.manual_seed(0)
    model = Unet(cfg).train()
    h, w = size
    x = torch.randn(batch, cfg["in_channels"], h, w)
    target = torch.randn(batch, cfg["out_channels"], h, w)
    t = torch.tensor([(i * 389 + 17) % 1000 for i in range(batch)])
    ctx = torch.randn(batch, tokens, cfg["cross_attention_dim"])

    def forward():
        with torch.no_grad():
            model(x, t, ctx)

    def forward_backward():
        model.zero_grad(set_to_none=False)
        F.mse_loss(model(x, t, ctx), target).backward()

    def timed(f):
        f()  # warm-up
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            f()
            out.append(time.perf_counter() - t0)
        return {"min_s": min(out), "median_s": sorted(out)[len(out) // 2], "all_s": out}

    out = {"parameters": sum(p.numel() for p in model.parameters()), "forward": timed(forward), "forward_backward": timed(forward_backward)}
    if profile:
        # self CPU time by op over one forward+backward (the profiler slows the step; shares are what count)
        with torch.autograd.profiler.profile() as prof:
            forward_backward()
        ops = [(e.key, e.self_cpu_time_total / 1000) for e in prof.key_averages()]
        out["profile_ms"] = dict(sorted(((k, round(v, 3)) for k, v in ops if v > 0), key=lambda kv: -kv[1]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", help="a fixture folder (unet/, unet_io.safetensors): compare with diffusers' output")
    p.add_argument("--case", choices=["A", "medium"], help="A: fixtures/sd-tiny/A's UNet; medium: the 35M UNet")
    p.add_argument("--fixtures", default="fixtures/sd-tiny")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", default=None, help="latent HxW (default: 16x16 for A, 32x32 for medium)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="also profile one forward+backward: self CPU ms by op")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.check:
        return check(a.check)
    if a.case == "A":
        with open(os.path.join(a.fixtures, "A", "unet", "config.json")) as f:
            cfg = json.load(f)
    else:
        cfg = MEDIUM
    size = tuple(int(s) for s in (a.size or ("16x16" if a.case == "A" else "32x32")).split("x"))
    r = timing(cfg, a.batch, size, a.runs, profile=a.profile)
    print(json.dumps({"case": a.case, "batch": a.batch, "size": list(size), "threads": torch.get_num_threads(), "torch": torch.__version__, **r}))


if __name__ == "__main__":
    main()
