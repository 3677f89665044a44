"""Trainer speed, side by side in one run: a textbook loop, an eager GPU-resident loop, and the
`nas` Trainer, on five small CNNs and four NAS-Bench-201 networks.

    python benchmarks/trainer_speed.py                    # on a GPU: 50,000 3x32x32 images
    python benchmarks/trainer_speed.py --device cpu --images 2000 --epochs 1   # smoke run

The data is synthetic (random images with learnable labels) unless `--cifar10 DIR` points at a
torchvision CIFAR-10 folder: speed does not depend on the pixels. Each method trains the same
network (same initial weights) for `--epochs` timed epochs after one warm-up epoch (which for the
Trainer includes the CUDA-graph capture, reported separately). An epoch is one pass over the
training images plus one evaluation pass over 5,000 validation images.

Targets on an H100: Trainer >= 4x the textbook loop on every CNN; Trainer >= 2.5x the eager
GPU-resident loop (same batch size) on every NB201 network.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.build import build_model  # noqa: E402
from nas.data import Dataset  # noqa: E402
from nas.space import SearchSpace, load_space  # noqa: E402
from nas.train import DeviceData, TrainConfig, fit  # noqa: E402

CNN_WIDTHS = ([16, 32], [32, 64, 64], [32, 32, 64, 64], [64, 128, 128, 256], [16, 16, 32, 32, 64, 64])
NB201 = {
    0: "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    11472: "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    6111: "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    1462: "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
}


def cnn_space(widths: list[int]) -> SearchSpace:
    """conv3x3-BN-ReLU per width; a 2x2 max pool wherever the width grows and at the end."""
    body: list[dict] = []
    for i, w in enumerate(widths):
        body.append({"conv": {"out": w, "kernel": 3, "norm": "batch", "act": "relu"}})
        if i + 1 == len(widths) or widths[i + 1] > w:
            body.append({"pool": {"kind": "max", "size": 2}})
    return SearchSpace.from_dict({"input": [3, 32, 32], "classes": 10, "body": body}, source=f"<cnn {widths}>")


def make_data(images: int, val: int, cifar: str | None, seed: int = 0) -> Dataset:
    if cifar:
        from nas.data import load_dataset

        return load_dataset("cifar10", data_dir=cifar)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((images + val, 3, 32, 32), dtype=np.float32)
    y = (x[:, :, :8, :8].mean(axis=(1, 2, 3)) > 0).astype(np.int64) + 2 * (x[:, 0, 16:, 16:].mean(axis=(1, 2)) > 0)
    return Dataset("synthetic", x[:images], y[:images], x[images:], y[images:], x[:0], y[:0], 10)


def textbook_epoch(model: nn.Module, loader: torch.utils.data.DataLoader, val_loader: torch.utils.data.DataLoader,
                   opt: torch.optim.Optimizer, device: torch.device) -> None:
    """The loop from a tutorial: host-memory DataLoader, fp32, .to(device) per batch."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        correct = 0
        for xb, yb in val_loader:
            correct += (model(xb.to(device)).argmax(1) == yb.to(device)).sum().item()


def resident_epoch(model: nn.Module, data: DeviceData, opt: torch.optim.Optimizer, batch: int, device: torch.device) -> None:
    """A bare fast eager loop: data on the device, bf16 autocast, channels_last, no syncs."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    cuda = device.type == "cuda"
    x, y = data.split("train", channels_last=cuda)
    n = y.shape[0]
    perm = torch.randperm(n, device=device)
    total = torch.zeros((), device=device)
    for i in range(n // batch):
        idx = perm[i * batch:(i + 1) * batch]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach()
    total.item()
    model.eval()
    xv, yv = data.split("val", channels_last=cuda)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for s in range(0, yv.shape[0], 2048):
            (model(xv[s:s + 2048]).argmax(1) == yv[s:s + 2048]).sum()
    if cuda:
        torch.cuda.synchronize(device)


def timed(fn, epochs: int, device: torch.device) -> tuple[float, float]:
    """(first epoch seconds, mean seconds of the next `epochs`)."""
    def one() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    first = one()
    return first, sum(one() for _ in range(epochs)) / epochs


def bench(name: str, model0: nn.Module, dataset: Dataset, data: DeviceData, device: torch.device, batch: int, epochs: int, lr: float) -> dict:
    cuda = device.type == "cuda"
    row = {"network": name, "params": sum(p.numel() for p in model0.parameters())}

    # 1. textbook
    model = copy.deepcopy(model0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    xt, yt = torch.from_numpy(dataset.x_train), torch.from_numpy(dataset.y_train)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), batch_size=128, shuffle=True, pin_memory=cuda)
    vloader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(dataset.x_val), torch.from_numpy(dataset.y_val)), batch_size=128)
    _, row["textbook"] = timed(lambda: textbook_epoch(model, loader, vloader, opt, device), epochs, device)

    # 2. eager GPU-resident loop at the Trainer's batch size
    model = copy.deepcopy(model0).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    _, row["resident"] = timed(lambda: resident_epoch(model, data, opt, batch, device), epochs, device)

    # 3. the Trainer (one fit: its history has per-epoch seconds; epoch 1 includes capture)
    model = copy.deepcopy(model0)
    cfg = TrainConfig(optimizer="momentum", lr=lr, batch_size=batch, epochs=epochs + 1, schedule="cosine", patience=None, device=str(device))
    result = fit(model, data, cfg)
    secs = [h["seconds"] for h in result.history]
    row["trainer_first"] = secs[0]
    row["trainer"] = sum(secs[1:]) / max(1, len(secs) - 1)
    row["graph"] = result.cuda_graph
    if result.graph_note:
        row["note"] = result.graph_note
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--val", type=int, default=5_000)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    ap.add_argument("--cnn-batch", type=int, default=512, help="Trainer and resident-loop batch size for the CNNs")
    ap.add_argument("--nb201-batch", type=int, default=256, help="batch size for the NB201 networks (NAS-Bench-201's)")
    ap.add_argument("--cifar10", metavar="DIR", help="use torchvision CIFAR-10 from DIR instead of synthetic data")
    ap.add_argument("--only", choices=("cnn", "nb201"), help="run one group only")
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads), torch {torch.__version__} -- GPU targets do not apply")
    dataset = make_data(args.images, args.val, args.cifar10)
    data = DeviceData(dataset, device)
    print(f"data: {dataset.name}, {len(dataset.y_train)} train / {len(dataset.y_val)} val images 3x32x32\n")

    head = f"{'network':<30} {'params':>9} {'textbook':>9} {'resident':>9} {'trainer':>9} {'capture':>8} {'graph':>5} {'vs textbook':>11} {'vs resident':>11}"
    print(head)
    print("-" * len(head), flush=True)
    rows = []

    def report(group: str, r: dict) -> None:
        rows.append((group, r))
        print(f"{r['network']:<30} {r['params']:>9,} {r['textbook']:>8.3f}s {r['resident']:>8.3f}s {r['trainer']:>8.3f}s "
              f"{r['trainer_first'] - r['trainer']:>7.2f}s {str(r['graph'])[0]:>5} {r['textbook'] / r['trainer']:>10.2f}x "
              f"{r['resident'] / r['trainer']:>10.2f}x", flush=True)
        if "note" in r:
            print(f"    note: {r['note']}", flush=True)

    if args.only in (None, "cnn"):
        for widths in CNN_WIDTHS:
            space = cnn_space(widths)
            torch.manual_seed(0)
            model0 = build_model(space, space.make({}))
            report("cnn", bench(f"cnn {widths}", model0, dataset, data, device, args.cnn_batch, args.epochs, 0.05))
    if args.only in (None, "nb201"):
        space = load_space("nb201")
        for index, text in NB201.items():
            torch.manual_seed(0)
            model0 = build_model(space, space.parse_arch(text))
            report("nb201", bench(f"nb201 #{index}", model0, dataset, data, device, args.nb201_batch, args.epochs, 0.1))
    print("\nseconds are per epoch (train pass + validation pass); capture = first Trainer epoch minus a steady one")
    if device.type == "cuda":
        cnn_ok = all(r["textbook"] / r["trainer"] >= 4 for g, r in rows if g == "cnn")
        nb_ok = all(r["resident"] / r["trainer"] >= 2.5 for g, r in rows if g == "nb201")
        print(f"targets: CNNs >= 4x textbook: {'met' if cnn_ok else 'NOT met'}; NB201 >= 2.5x resident eager: {'met' if nb_ok else 'NOT met'}")


if __name__ == "__main__":
    main()
