"""Load an exported network and classify a few digits with it.

    nas search --run runs/demo                 # a search on digits (a few minutes on a CPU)
    nas export runs/demo --out best/           # the default pick of the Pareto front (near-best)
    python examples/use_exported_model.py best/

The export holds the network's spec and weights, and the preprocessing its training data had;
here raw sklearn digits (pixel values 0..16) go through that preprocessing into the network.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from sklearn.datasets import load_digits

import nas


def preprocess(x_raw: torch.Tensor, preprocessing: dict | None) -> torch.Tensor:
    """What the network saw in training: (raw / scale - mean) / std, per channel."""
    if preprocessing is None:
        return x_raw
    mean = torch.tensor(preprocessing["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing["std"]).view(1, -1, 1, 1)
    return (x_raw / preprocessing["scale"] - mean) / std


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", nargs="?", default="best", help="an export directory (default: best/)")
    ap.add_argument("--n", type=int, default=12, help="how many digits to classify")
    args = ap.parse_args()

    model = nas.load_model(args.export)                       # nn.Module with trained weights, eval mode
    info = json.loads((Path(args.export) / "arch.json").read_text())
    print(f"network: {info['summary']}  ({sum(p.numel() for p in model.parameters()):,} parameters)")

    digits = load_digits()
    x_raw = torch.tensor(digits.images[-args.n:], dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8)
    with torch.no_grad():
        predicted = model(preprocess(x_raw, info["preprocessing"])).argmax(1)
    truth = digits.target[-args.n:]
    print("true:     ", " ".join(str(int(t)) for t in truth))
    print("predicted:", " ".join(str(int(p)) for p in predicted))
    print(f"{int((predicted.numpy() == truth).sum())}/{args.n} right")


if __name__ == "__main__":
    main()
