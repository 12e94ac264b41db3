"""The acceptance figures of ``bench/gpu.sh``, from the JSON files it wrote.

A figure whose run failed or timed out is printed as "unmeasured", never guessed.

Example
-------
python bench/gpu_summary.py /tmp/urbanvis-gpu-bench
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

UNMEASURED = "unmeasured"


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def get(data: dict, *keys):
    for key in keys:
        if not isinstance(data, dict) or data.get(key) is None:
            return None
        data = data[key]
    return data


def rate(value, unit: str) -> str:
    return UNMEASURED if value is None else f"{value:,.0f} {unit}"


def ratio(a, b) -> float | None:
    return None if a is None or b is None or not b else a / b


def summary(folder: Path) -> list[str]:
    pipeline = read(folder / "pipeline.json")
    embed = read(folder / "embed.json")
    cfg = pipeline.get("config", {})
    gpu = get(pipeline, "machine", "gpu") or get(embed, "machine", "gpu") or "GPU unknown"
    eager_step = get(pipeline, "results", "compile_off", "step", "pairs_per_s")
    eager_e2e = get(pipeline, "results", "compile_off", "end_to_end", "pairs_per_s")
    step = get(pipeline, "results", "compile_on", "step", "pairs_per_s")
    e2e = get(pipeline, "results", "compile_on", "end_to_end", "pairs_per_s")
    compile_s = get(pipeline, "results", "compile_on", "step", "compile_seconds")
    speedup = ratio(step, eager_step)
    share = ratio(e2e, step)
    eager_share = ratio(eager_e2e, eager_step)
    lines = [
        f"== issue 14 acceptance figures on {gpu} ==",
        f"pretrain {cfg.get('arch', 'vit_base_patch16_224')}, batch {cfg.get('batch', 512)}, "
        f"{cfg.get('precision', 'bf16')}, {cfg.get('image_px', 640)} px JPEGs:",
        f"  step, eager:          {rate(eager_step, 'pairs/s')}",
        f"  step, compiled:       {rate(step, 'pairs/s')}"
        + ("" if speedup is None else f"  ({speedup:.2f}x eager)")
        + ("" if compile_s is None else f"; compiled in {compile_s:.0f} s"),
        f"  end to end, eager:    {rate(eager_e2e, 'pairs/s')}"
        + ("" if eager_share is None else f"  ({eager_share:.1%} of the eager step)"),
        f"  end to end, compiled: {rate(e2e, 'pairs/s')}"
        + (
            ""
            if share is None
            else f"  ({share:.1%} of the compiled step; goal >= 95%: "
            f"{'met' if share >= 0.95 else 'NOT met'})"
        ),
    ]
    rows = {
        r.get("compile"): r for r in embed.get("results", []) if r.get("setting") == "cuda-nvjpeg"
    }
    any_row = next(iter(rows.values()), {})
    lines.append(
        f"embed {any_row.get('arch', 'vit_base_patch16_224')} bf16, batch "
        f"{any_row.get('batch_size', 512)}, end to end from {any_row.get('source_px', 640)} px "
        f"JPEG files (nvJPEG):"
    )
    for mode in ("off", "on"):
        r = rows.get(mode, {})
        loop = r.get("loop_images_per_second")
        text = f"  compile {mode}: {rate(loop, 'images/s')}"
        if loop is not None:
            text += f" (goal >= 5,000: {'met' if loop >= 5000 else 'NOT met'})"
            text += f"; whole call {rate(r.get('call_images_per_second'), 'images/s')}"
        if r.get("compile_seconds") is not None:
            text += (
                f"; compiled in {r['compile_seconds']:.0f} s, "
                f"{rate(r.get('loop_images_per_second_after_compile'), 'images/s')} after it"
            )
        lines.append(text)
    return lines


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/urbanvis-gpu-bench")
    print("\n".join(summary(folder)))


if __name__ == "__main__":
    main()
